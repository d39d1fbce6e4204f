// The visibility index: an empty file under /visibility/public/ or /visibility/private/ for each repository
// whose settings set a visibility, so that the catalog and the search learn every repository's visibility
// from two listings held in memory, never from a settings read per repository. RepositoryStore.update keeps
// it in step with the settings, under the repository's settings lock; the settings stay the authority
// for one repository (a token, a pull, a mount). Every change rewrites /visibility/stamp with a random
// value, and a process serves its copy only while the stamp it read with it is still the stamp in storage:
// one small read per question, which also sees a change an admin command made from another process.
import { randomUUID } from 'node:crypto';
import type { StorageDriver } from './driver/index.ts';
import { baseName, decodeName, layout } from './layout.ts';
import type { Lock } from './coordination/index.ts';
import { mapLimit, repositoryNames, WALK_CONCURRENCY } from './walk.ts';

export type SetVisibility = 'public' | 'private';

/** Every repository's visibility as its settings set it, at one moment. */
export interface VisibilitySnapshot {
  /** What the settings of `name` set, or undefined (the mode's default applies). */
  of(name: string): SetVisibility | undefined;
}

export class VisibilityIndex {
  private cached?: { stamp: string; snapshot: VisibilitySnapshot };
  private loading?: { stamp: string; promise: Promise<VisibilitySnapshot> };
  private complete = false;
  private completing?: Promise<void>;

  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    /** The visibility the stored settings of `name` set (read under its settings lock). */
    private readonly settingsVisibility: (name: string) => Promise<SetVisibility | undefined>,
  ) {}

  /**
   * Changes a repository's visibility from `before` to `after` around `writeSettings`, in the order that
   * never shows the repository more than its settings do: a private entry is written before the settings
   * that make it private (or unset it), a public one only after the settings that make it public, and a
   * private entry wins over a public one still there; the stamp changes as soon as the repository is hidden,
   * so no process goes on serving a copy that shows it, and again at the end unless it was made private.
   * Runs under the repository's settings lock.
   */
  async change(name: string, before: SetVisibility | undefined, after: SetVisibility | undefined, writeSettings: () => Promise<void>): Promise<void> {
    if (before === after) return writeSettings();
    const hidden = layout.visibilityEntry('private', name);
    const shown = layout.visibilityEntry('public', name);
    if (after !== 'public') {
      await this.driver.putContent(hidden, '');
      await this.touch();
    }
    await writeSettings();
    if (after === 'public') await this.driver.putContent(shown, '');
    else await this.driver.delete(shown);
    if (after !== 'private') await this.driver.delete(hidden);
    // Made private, the repository was hidden by the first change of the stamp: a copy loaded since holds
    // the private entry, which wins over a public one deleted after it. So a new private repository (each
    // new one in private mode) costs one stamp write, and one flush, fewer.
    if (after !== 'private') await this.touch();
  }

  /** The index as storage holds it now: one read (the stamp) while nothing changed, else two listings. */
  async snapshot(): Promise<VisibilitySnapshot> {
    const stamp = (await this.driver.getContent(layout.visibilityStamp))?.toString() ?? '';
    if (stamp !== '' && this.cached?.stamp === stamp) return this.cached.snapshot;
    if (stamp !== '' && this.loading?.stamp === stamp) return this.loading.promise;
    const promise = this.load(stamp);
    this.loading = { stamp, promise };
    try {
      return await promise;
    } finally {
      if (this.loading?.promise === promise) this.loading = undefined;
    }
  }

  private async load(stamp: string): Promise<VisibilitySnapshot> {
    await this.completed();
    const [shown, hidden] = await Promise.all((['public', 'private'] as const).map(async (visibility) =>
      new Set((await this.driver.list(layout.visibilityDir(visibility))).map((path) => decodeName(baseName(path))))));
    const snapshot: VisibilitySnapshot = {
      of: (name) => (hidden!.has(name) ? 'private' : shown!.has(name) ? 'public' : undefined),
    };
    // A stamp read before the listings: if a change landed in between, the next question reloads.
    if (stamp !== '') this.cached = { stamp, snapshot };
    return snapshot;
  }

  private async touch(): Promise<void> {
    await this.driver.putContent(layout.visibilityStamp, randomUUID());
  }

  /**
   * Once per storage: the index is made from the settings of every repository that has some (settings
   * written before the index existed), under a lock so that one process does it; each repository under its
   * settings lock, so that a change made meanwhile is not undone.
   */
  private async completed(): Promise<void> {
    if (this.complete) return;
    this.completing ??= this.build().finally(() => (this.completing = undefined));
    await this.completing;
  }

  private async build(): Promise<void> {
    const done = async () => (await this.driver.stat(layout.visibilityComplete)) !== undefined;
    if (!(await done())) {
      await this.lock.run('visibility-index', async () => {
        if (await done()) return;
        await mapLimit(await repositoryNames(this.driver), WALK_CONCURRENCY, (name) =>
          this.lock.run(`settings:${name}`, async () => {
            const visibility = await this.settingsVisibility(name);
            if (visibility) await this.driver.putContent(layout.visibilityEntry(visibility, name), '');
            if (visibility !== 'private') await this.driver.delete(layout.visibilityEntry('private', name));
            if (visibility !== 'public') await this.driver.delete(layout.visibilityEntry('public', name));
          }));
        await this.driver.putContent(layout.visibilityComplete, new Date().toISOString());
        await this.touch();
      });
    }
    this.complete = true;
  }
}
