// Settings a repository carries beyond its content: its visibility now; the catalog adds description,
// README and logo. Kept beside the repository in storage, so every replica sees the same.
import type { StorageDriver } from './driver.ts';
import { layout } from './layout.ts';
import type { Lock } from './lock.ts';

export interface RepositorySettings {
  visibility?: 'public' | 'private';
}

export class RepositoryStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
  ) {}

  async settings(name: string): Promise<RepositorySettings | undefined> {
    const content = await this.driver.getContent(layout.repositorySettings(name));
    return content ? (JSON.parse(content.toString()) as RepositorySettings) : undefined;
  }

  /** Merges `patch` into the settings; `onlyIfAbsent` leaves settings that exist untouched (first push). */
  update(name: string, patch: RepositorySettings, onlyIfAbsent = false): Promise<RepositorySettings> {
    return this.lock.run(`settings:${name}`, async () => {
      const current = await this.settings(name);
      if (current && onlyIfAbsent) return current;
      const next = { ...current, ...patch };
      await this.driver.putContent(layout.repositorySettings(name), JSON.stringify(next));
      return next;
    });
  }
}
