// An in-process mutex per key: one writer at a time for an upload session or a tag. (Several replicas
// will need a shared lock; that one implements the same `run`.)
export interface Lock {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

export class LocalLock implements Lock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const current = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => current);
    this.tails.set(key, tail);
    try {
      await previous;
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
