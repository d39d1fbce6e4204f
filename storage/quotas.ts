// Quotas per namespace: the bytes of the distinct blobs linked anywhere in the namespace, each counted
// once however many repositories hold it. Checked before bytes are stored (from Content-Length, or a
// mount's size) and again when a blob is admitted (an upload completes, a mount links): that last check
// and the link happen under the namespace's quota lock, so concurrent pushes cannot all pass one check
// and together exceed the quota.
import { RegistryError } from '../server/errors.ts';
import type { BlobStore } from './blobs.ts';
import type { StorageDriver } from './driver.ts';
import { layout } from './layout.ts';
import { namespaceOf, type PolicyStore } from './policies.ts';
import type { Lock } from './lock.ts';
import type { Digest } from './reference.ts';
import { digestFolders, repositoryNames } from './walk.ts';

export class Quotas {
  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly policies: PolicyStore,
    private readonly lock: Lock,
  ) {}

  /** Bytes held by the namespace, and the distinct blobs counted. */
  async usage(namespace: string): Promise<{ bytes: number; blobs: Set<string> }> {
    const seen = new Set<string>();
    let bytes = 0;
    for (const name of await repositoryNames(this.driver, layout.repositoryDir(namespace))) {
      for (const digest of await digestFolders(this.driver, layout.layersOf(name))) {
        if (seen.has(digest.value)) continue;
        seen.add(digest.value);
        bytes += (await this.blobs.size(digest)) ?? 0;
      }
    }
    return { bytes, blobs: seen };
  }

  /**
   * Refuses with DENIED when `incoming` more bytes would take the repository's namespace past its quota.
   * A blob the namespace already holds adds nothing.
   */
  async check(name: string, incoming: number, digest?: Digest): Promise<void> {
    const namespace = namespaceOf(name);
    const limit = (await this.policies.get(namespace))?.quotaBytes;
    if (limit === undefined) return;
    const usage = await this.usage(namespace);
    if (digest && usage.blobs.has(digest.value)) return;
    if (usage.bytes + incoming > limit) {
      throw new RegistryError('DENIED', `the quota of namespace ${namespace} would be exceeded`, {
        namespace,
        usageBytes: usage.bytes,
        limitBytes: limit,
        requestedBytes: incoming,
      });
    }
  }

  /**
   * Checks `incoming` bytes against the quota and, if they fit, runs `admit` (which links the blob into
   * the repository) before any other admission into the namespace is checked. Without a quota, only runs
   * `admit`. Callers take no blob lock before this one (admissions take the quota lock, then the blob's).
   */
  async admit<T>(name: string, incoming: number, digest: Digest, admit: () => Promise<T>): Promise<T> {
    const namespace = namespaceOf(name);
    if ((await this.policies.get(namespace))?.quotaBytes === undefined) return admit();
    return this.lock.run(`quota:${namespace}`, async () => {
      await this.check(name, incoming, digest);
      return admit();
    });
  }
}
