// A blob fill followed from another process (a replica on the same storage and Redis, or another worker
// of `--workers`): the process that fills announces its upload session and how many bytes storage holds
// of it (coordination's Announcements); a process whose client wants the blob meanwhile reads the session
// up to that size and streams it, and finishes from the stored blob once the fill is committed. The last
// byte is held back until then, as a local fill does (fill.ts): a fill that fails its digest, or stops,
// cuts every follower's body short, so no client ever holds a whole blob of wrong bytes.
// Where storage reads nothing of a session before it completes (S3), nothing is announced: followers wait
// for the fill's lock and serve the stored blob, as before.
import { EventEmitter, once } from 'node:events';
import { Readable } from 'node:stream';
import type { Announcements, BlobUpload, Digest, Storage } from '../storage/index.ts';
import type { BlobFill, StreamedFill } from './fill.ts';

/** What a filling process announces. */
export interface FillNotice {
  /** The upload session the bytes go to. */
  name: string;
  id: string;
  /** The blob's size, when the upstream said it. */
  size?: number;
  /** Whether the upstream has answered (the size, if any, is known). */
  started: boolean;
  /** Bytes of the session storage holds, readable by every process. */
  received: number;
}

/** How often the filler says how far it is, at most; and at least (a heartbeat), even when no byte came. */
const ANNOUNCE_EVERY_MS = 100;
const HEARTBEAT_MS = 2000;
/** An announcement not renewed for this long is gone (its filler died). */
const ANNOUNCEMENT_TTL_MS = 10_000;
/**
 * A follower that hears nothing for this long gives its fill up: the filler announces at least every
 * HEARTBEAT_MS, bytes or not (a silent upstream included), so silence this long means it died. Redis says
 * nothing when an announcement expires, so without this a follower waited for the upstream's whole timeout.
 */
export const FOLLOWER_IDLE_MS = ANNOUNCEMENT_TTL_MS;
/** Bytes one read of the session asks for. */
const READ_SPAN = 4 * 1024 * 1024;

export function fillKey(digest: Digest): string {
  return `mirror-fill:${digest.value}`;
}

function parseNotice(value: string): FillNotice | undefined {
  try {
    const n = JSON.parse(value) as Partial<FillNotice>;
    const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    if (typeof n.name !== 'string' || typeof n.id !== 'string' || !count(n.received) || typeof n.started !== 'boolean') return undefined;
    if (n.size !== undefined && !count(n.size)) return undefined;
    return { name: n.name, id: n.id, size: n.size, started: n.started, received: n.received! };
  } catch {
    return undefined;
  }
}

/** The filling side: tells, while the fill runs, which session holds its bytes and how many. */
export class FillAnnouncer {
  private session?: BlobUpload;
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private last?: string;
  private lastAt = 0;
  private ended = false;

  constructor(
    private readonly announcements: Announcements,
    private readonly storage: Storage,
    private readonly digest: Digest,
    private readonly fill: () => BlobFill | undefined,
  ) {}

  /** Only where other processes can read a session as it grows. */
  static wanted(storage: Storage): boolean {
    return storage.uploads.readableWhileReceiving;
  }

  /** The session exists: announce it now, then as it grows. */
  opened(session: BlobUpload): void {
    if (this.ended) return;
    this.session = session;
    this.tick();
    this.timer = setInterval(() => this.tick(), ANNOUNCE_EVERY_MS);
    this.timer.unref();
  }

  private tick(): void {
    if (this.ticking || this.ended || !this.session) return;
    const { name, id } = this.session;
    this.ticking = (async () => {
      const received = (await this.storage.uploads.get(name, id))?.offset;
      const fill = this.fill();
      if (received === undefined || !fill || this.ended) return;
      const value = JSON.stringify({ name, id, size: fill.size, started: fill.hasStarted, received } satisfies FillNotice);
      if (value === this.last && Date.now() - this.lastAt < HEARTBEAT_MS) return;
      await this.announcements.announce(fillKey(this.digest), value, ANNOUNCEMENT_TTL_MS);
      this.last = value;
      this.lastAt = Date.now();
    })()
      // A lost announcement costs followers a little delay (the next one comes), never a wrong byte.
      .catch(() => {})
      .finally(() => (this.ticking = undefined));
  }

  /** The fill ended (stored, or failed): nothing more is announced, and followers hear it is over. */
  async end(): Promise<void> {
    this.ended = true;
    clearInterval(this.timer);
    await this.ticking;
    if (this.session) await this.announcements.withdraw(fillKey(this.digest)).catch(() => {});
  }
}

/**
 * The following side: a fill another process runs, as announced. Done once the announcement is
 * withdrawn and the blob is stored; failed when it is withdrawn without the blob, when it names another
 * session, or when nothing is heard for `idleMs`.
 */
export class FollowedFill implements StreamedFill {
  state: 'running' | 'done' | 'failed' = 'running';
  error?: Error;
  size?: number;
  readonly started: Promise<void>;
  readonly finished: Promise<void>;
  private notice: FillNotice;
  private readonly events = new EventEmitter();
  private idle?: NodeJS.Timeout;
  private markStarted!: () => void;
  private settle!: (err?: Error) => void;

  constructor(
    private readonly storage: Storage,
    private readonly digest: Digest,
    first: FillNotice,
    private readonly idleMs: number,
  ) {
    this.events.setMaxListeners(0);
    this.notice = first;
    this.size = first.size;
    let failStart!: (err: Error) => void;
    this.started = new Promise<void>((resolve, reject) => {
      this.markStarted = resolve;
      failStart = reject;
    });
    this.finished = new Promise<void>((resolve, reject) => {
      this.settle = (err) => {
        if (err) {
          failStart(err);
          reject(err);
        } else {
          this.markStarted();
          resolve();
        }
      };
    });
    this.started.catch(() => {});
    this.finished.catch(() => {});
    if (first.started) this.markStarted();
    this.armIdle();
  }

  /** A follower of the fill a heard announcement names; undefined when it names none. */
  static from(storage: Storage, digest: Digest, value: string, idleMs: number): FollowedFill | undefined {
    const notice = parseNotice(value);
    return notice && new FollowedFill(storage, digest, notice, idleMs);
  }

  /** A value (or withdrawal) heard on the fill's announcement. */
  heard(value: string | undefined): void {
    if (this.state !== 'running') return;
    const notice = value === undefined ? undefined : parseNotice(value);
    if (!notice || notice.id !== this.notice.id) return void this.conclude();
    if (notice.received >= this.notice.received) this.notice = notice;
    this.size ??= notice.size;
    if (notice.started) this.markStarted();
    this.armIdle();
    this.events.emit('change');
  }

  private armIdle(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => void this.conclude(), this.idleMs);
    this.idle.unref();
  }

  /** The announcement ended: done if the blob is stored now, failed otherwise. */
  private async conclude(): Promise<void> {
    if (this.state !== 'running') return;
    clearTimeout(this.idle);
    const stored = await this.storage.blobs.size(this.digest).catch(() => undefined);
    if (this.state !== 'running') return;
    if (stored !== undefined && (this.size === undefined || this.size === stored)) {
      this.size = stored;
      this.state = 'done';
      this.settle();
    } else {
      this.state = 'failed';
      this.error = new Error(`the fill of ${this.digest.value} in another process ended without storing it`);
      this.settle(this.error);
    }
    this.events.emit('change');
  }

  /** A client's view: the session's bytes as storage holds them (the last one held back), then the stored blob's rest. */
  reader(): Readable {
    const fill = this;
    async function* bytes(): AsyncGenerator<Buffer> {
      let position = 0;
      for (;;) {
        if (fill.state === 'failed') throw fill.error;
        const done = fill.state === 'done';
        const { received, name, id } = fill.notice;
        const available = done ? fill.size! : Math.min(received, fill.size ?? Number.POSITIVE_INFINITY) - 1;
        if (position >= available) {
          if (done) return;
          await once(fill.events, 'change');
          continue;
        }
        const range = { start: position, end: Math.min(available, position + READ_SPAN) - 1 };
        const stream = done ? await fill.storage.blobs.open(fill.digest, range) : await fill.storage.uploads.readReceived(name, id, range);
        if (!stream) {
          // The session is gone (completed or cancelled) between the announcement and the read: the verdict comes next.
          await once(fill.events, 'change');
          continue;
        }
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          position += chunk.length;
          yield chunk;
        }
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }
}
