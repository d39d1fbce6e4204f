// What several Berth processes must agree on: who writes an upload session or a tag right now (Lock),
// whether a fact a process cached about a repository is still current (Generations), and how often a
// client has come lately (RateCounter), and how far a job one of them runs has come (Announcements).
import { LocalAnnouncements, type Announcements } from './announcements.ts';
import { LocalLock, type Lock } from './lock.ts';

export interface Generations {
  /**
   * The repository's current generation: facts cached at this generation are still true. Undefined
   * when it cannot be known right now; then nothing cached about the repository is trusted.
   */
  current(name: string): Promise<number | undefined>;
  /** Announces that the repository's tags or manifests changed; facts cached earlier die. */
  bump(name: string): Promise<void>;
}

export interface RateCount {
  /** Hits in the current window, this one included. */
  count: number;
  /** Milliseconds until the window ends. */
  resetMs: number;
}

/** The Retry-After value (whole seconds, at least 1) for a client refused in this window. */
export function retryAfterSeconds(count: RateCount): string {
  return String(Math.max(1, Math.ceil(count.resetMs / 1000)));
}

/** Counts hits per key in fixed windows: what rate limits are made of. */
export interface RateCounter {
  /**
   * Counts `amount` hits (one by default; zero only reads the count). Undefined when it cannot be counted
   * right now (shared state away).
   */
  hit(key: string, windowMs: number, amount?: number): Promise<RateCount | undefined>;
}

export interface Coordination {
  lock: Lock;
  generations: Generations;
  counter: RateCounter;
  announcements: Announcements;
  close(): Promise<void>;
}

/** Counters in this process's memory; windows that ended are dropped as they are met. */
export class LocalRateCounter implements RateCounter {
  private readonly windows = new Map<string, { count: number; endsAt: number }>();

  async hit(key: string, windowMs: number, amount = 1): Promise<RateCount> {
    const now = Date.now();
    let window = this.windows.get(key);
    if (!window || window.endsAt <= now) {
      if (this.windows.size > 100_000) for (const [k, w] of this.windows) if (w.endsAt <= now) this.windows.delete(k);
      window = { count: 0, endsAt: now + windowMs };
      this.windows.set(key, window);
    }
    window.count += amount;
    return { count: window.count, resetMs: window.endsAt - now };
  }
}

/** One process owns the data: its own memory is the whole truth. */
export class LocalGenerations implements Generations {
  private readonly values = new Map<string, number>();

  async current(name: string): Promise<number> {
    return this.values.get(name) ?? 0;
  }

  async bump(name: string): Promise<void> {
    this.values.set(name, (this.values.get(name) ?? 0) + 1);
  }
}

export function localCoordination(): Coordination {
  return { lock: new LocalLock(), generations: new LocalGenerations(), counter: new LocalRateCounter(), announcements: new LocalAnnouncements(), close: async () => {} };
}
