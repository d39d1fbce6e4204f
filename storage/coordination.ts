// What several Berth processes must agree on: who writes an upload session or a tag right now (Lock),
// and whether a fact a process cached about a repository is still current (Generations).
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

export interface Coordination {
  lock: Lock;
  generations: Generations;
  close(): Promise<void>;
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
  return { lock: new LocalLock(), generations: new LocalGenerations(), close: async () => {} };
}
