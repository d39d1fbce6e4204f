// Settings a repository carries beyond its content: its visibility now; the catalog adds description,
// README and logo. Kept beside the repository in storage, so every replica sees the same.
import type { StorageDriver } from './driver/index.ts';
import { layout } from './layout.ts';
import type { Lock } from './coordination/index.ts';
import { VisibilityIndex, type VisibilitySnapshot } from './visibility.ts';

export interface RepositorySettings {
  visibility?: 'public' | 'private';
  /** One line shown in search results. */
  description?: string;
  /** Markdown, rendered (sanitised) on the repository page. */
  readme?: string;
  /** The sha256 hex of the logo: its images are `<hex>-256.webp`, `<hex>-64.png`, … in storage. */
  logo?: string;
}

/** The description's and README's bounds, and the description's one line, whoever sets them (pages, API). */
export const MAX_DESCRIPTION = 300;
export const MAX_README = 100_000;

function bounded(patch: RepositorySettings): RepositorySettings {
  const next = { ...patch };
  if (next.description !== undefined) next.description = next.description.replace(/\s+/g, ' ').trim().slice(0, MAX_DESCRIPTION);
  if (next.readme !== undefined) next.readme = next.readme.slice(0, MAX_README);
  return next;
}

export class RepositoryStore {
  /** Every repository's visibility at once, kept in step with the settings (storage/visibility.ts). */
  private readonly visibilityIndex: VisibilityIndex;

  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
  ) {
    this.visibilityIndex = new VisibilityIndex(driver, lock, async (name) => (await this.settings(name))?.visibility);
  }

  /** Called after every change of settings (the search index copies some of them). */
  changed?: (name: string) => Promise<void>;

  async settings(name: string): Promise<RepositorySettings | undefined> {
    const content = await this.driver.getContent(layout.repositorySettings(name));
    return content ? (JSON.parse(content.toString()) as RepositorySettings) : undefined;
  }

  /** Merges `patch` (its text bounded) into the settings; `onlyIfAbsent` leaves settings that exist untouched (first push). */
  async update(name: string, patch: RepositorySettings, onlyIfAbsent = false): Promise<RepositorySettings> {
    let written = false;
    const next = await this.lock.run(`settings:${name}`, async () => {
      const current = await this.settings(name);
      if (current && onlyIfAbsent) return current;
      const next = { ...current, ...bounded(patch) };
      await this.visibilityIndex.change(name, current?.visibility, next.visibility, () =>
        this.driver.putContent(layout.repositorySettings(name), JSON.stringify(next)));
      written = true;
      return next;
    });
    if (written) await this.changed?.(name);
    return next;
  }

  /**
   * The visibility the settings of every repository set, without a read per repository: the catalog's
   * and the search's filter. One repository's own settings remain the authority (`settings`).
   */
  visibilities(): Promise<VisibilitySnapshot> {
    return this.visibilityIndex.snapshot();
  }
}
