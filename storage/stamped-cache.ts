// Values cached with the generation they were read at (see coordination.ts): one is served only while
// that generation is still current, so a write anywhere makes it stale. Bounded: the oldest go first.
export class StampedCache<V> {
  private readonly entries = new Map<string, { generation: number; value: V }>();

  constructor(private readonly max: number) {}

  /** The value, if it was stored at this generation; nothing when the generation is unknown. */
  get(key: string, generation: number | undefined): V | undefined {
    if (generation === undefined) return undefined;
    const entry = this.entries.get(key);
    return entry?.generation === generation ? entry.value : undefined;
  }

  /** Keeps the value at this generation; an unknown generation keeps nothing. */
  set(key: string, generation: number | undefined, value: V): void {
    if (generation === undefined) return;
    this.entries.delete(key);
    this.entries.set(key, { generation, value });
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
  }
}
