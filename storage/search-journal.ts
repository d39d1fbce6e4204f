// SearchJournal: which repositories' search summaries changed lately, so that another process catches up
// by reading those few summaries instead of every repository's. Each process appends to a journal of its
// own (/search-journal/<writer>.json: the last 1,024 repositories it changed, each with the number of its
// last change), so writers never contend; a reader remembers, per writer, the last number it applied.
// Only a reader that fell more than 1,024 repositories behind one writer (or never loaded) reads
// everything again.
import { randomBytes } from 'node:crypto';
import { UNFLUSHED, type StorageDriver } from './driver/index.ts';
import { baseName, layout } from './layout.ts';

/** Changes a journal keeps: a reader further behind than this loads every summary again. */
export const JOURNAL_LENGTH = 1024;
/** A journal not written for this long belongs to a process that is gone. */
const ABANDONED_MS = 7 * 86_400_000;

interface JournalDocument {
  writer: string;
  updatedAt: number;
  /** The number of this writer's last change. */
  seq: number;
  /** The highest number that left the journal: a reader that applied less than it must read everything. */
  dropped: number;
  /** [repository, number of its last change], oldest first: each repository once. */
  recent: [string, number][];
}

/** What a reader must do to catch up: re-read these repositories, or everything. */
export type CatchUp = { kind: 'names'; names: Set<string> } | { kind: 'everything' };

export class SearchJournal {
  readonly writer = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  /** Each repository once, at its last change: a repository pushed to all day is one entry. */
  private readonly recent = new Map<string, number>();
  private seq = 0;
  private dropped = 0;
  private writing: Promise<void> = Promise.resolve();
  /** Per writer, the last change this process has applied. */
  private applied = new Map<string, number>();

  constructor(private readonly driver: StorageDriver) {}

  /** Records that a repository's summary changed; resolves once the journal holding it is stored. */
  record(name: string): Promise<void> {
    this.recent.delete(name);
    this.recent.set(name, ++this.seq);
    if (this.recent.size > JOURNAL_LENGTH) {
      const [oldest, seq] = this.recent.entries().next().value as [string, number];
      this.recent.delete(oldest);
      this.dropped = Math.max(this.dropped, seq);
    }
    // Writes go out one at a time, each with everything recorded so far, so the last one stored is whole.
    const write = this.writing.catch(() => {}).then(() => {
      const doc: JournalDocument = { writer: this.writer, updatedAt: Date.now(), seq: this.seq, dropped: this.dropped, recent: [...this.recent] };
      return this.driver.putContent(layout.searchJournal(this.writer), JSON.stringify(doc), UNFLUSHED);
    });
    this.writing = write;
    return write;
  }

  /**
   * Where every writer stands now: called before a full load, so that whatever changes after it is
   * caught up later (a change applied twice only reads its summary twice).
   */
  async mark(): Promise<void> {
    const docs = await this.read();
    this.applied = new Map(docs.map((d) => [d.writer, d.seq]));
  }

  /** Where this process stands in every journal, its own included: what a snapshot of its memory is current to. */
  positions(): Record<string, number> {
    return { ...Object.fromEntries(this.applied), [this.writer]: this.seq };
  }

  /** Takes a snapshot's positions as this process's own: the journals are caught up from there. */
  restore(positions: Record<string, number>): void {
    this.applied = new Map(Object.entries(positions));
  }

  /** The repositories other processes changed since this one last looked. */
  async catchUp(): Promise<CatchUp> {
    const docs = await this.read();
    const names = new Set<string>();
    for (const doc of docs) {
      if (doc.writer === this.writer) continue;
      const last = this.applied.get(doc.writer) ?? 0;
      if (doc.seq <= last) continue;
      // A change this reader has not applied may have left the journal.
      if (doc.dropped > last) return { kind: 'everything' };
      for (const [name, n] of doc.recent) if (n > last) names.add(name);
    }
    for (const doc of docs) this.applied.set(doc.writer, doc.seq);
    return { kind: 'names', names };
  }

  private async read(): Promise<JournalDocument[]> {
    const paths = await this.driver.list(layout.searchJournalDir);
    const docs: JournalDocument[] = [];
    for (const path of paths) {
      const raw = await this.driver.getContent(path);
      let doc: JournalDocument | undefined;
      try {
        doc = raw ? (JSON.parse(raw.toString()) as JournalDocument) : undefined;
      } catch {
        // a journal torn by a crash: its writer is gone, and what it changed is in the summaries
      }
      if (!doc || doc.writer !== baseName(path).replace(/\.json$/, '') || !Array.isArray(doc.recent)) continue;
      if (Date.now() - doc.updatedAt > ABANDONED_MS && doc.writer !== this.writer) {
        await this.driver.delete(path);
        continue;
      }
      docs.push(doc);
    }
    return docs;
  }
}
