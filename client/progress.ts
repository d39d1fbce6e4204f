// Download progress: one bar per layer on a terminal (cli-progress), plain lines otherwise (logs, CI,
// pipes), always on stderr so that a container's stdout stays its own.
import cliProgress from 'cli-progress';

export interface LayerProgress {
  advance(bytes: number): void;
  /** A retry picks the download up again at `offset`. */
  resumed(offset: number): void;
  done(note: string): void;
}

export interface Progress {
  layer(digest: string, size: number): LayerProgress;
  /** A line about the pull as a whole. */
  note(text: string): void;
  stop(): void;
}

function short(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 13);
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

class LineProgress implements Progress {
  constructor(private readonly out: NodeJS.WritableStream) {}

  layer(digest: string, size: number): LayerProgress {
    const id = short(digest);
    this.out.write(`${id}: downloading ${formatBytes(size)}\n`);
    return {
      advance: () => {},
      resumed: (offset) => this.out.write(`${id}: resuming at byte ${offset}\n`),
      done: (note) => this.out.write(`${id}: ${note}\n`),
    };
  }

  note(text: string): void {
    this.out.write(`${text}\n`);
  }

  stop(): void {}
}

class BarProgress implements Progress {
  private readonly bars: cliProgress.MultiBar;

  constructor(out: NodeJS.WriteStream) {
    this.bars = new cliProgress.MultiBar(
      { stream: out, format: '{id} [{bar}] {percentage}% {done}/{size} {note}', hideCursor: true, clearOnComplete: false, autopadding: true },
      cliProgress.Presets.shades_classic,
    );
  }

  layer(digest: string, size: number): LayerProgress {
    const bar = this.bars.create(size, 0, { id: short(digest), size: formatBytes(size), done: formatBytes(0), note: '' });
    let total = 0;
    return {
      advance: (bytes) => {
        total += bytes;
        bar.update(total, { done: formatBytes(total) });
      },
      resumed: (offset) => {
        total = offset;
        bar.update(total, { done: formatBytes(total), note: 'resuming' });
      },
      done: (note) => bar.update(size, { done: formatBytes(size), note }),
    };
  }

  note(text: string): void {
    this.bars.log(`${text}\n`);
  }

  stop(): void {
    this.bars.stop();
  }
}

export function createProgress(out: NodeJS.WriteStream = process.stderr): Progress {
  return out.isTTY ? new BarProgress(out) : new LineProgress(out);
}
