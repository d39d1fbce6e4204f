// Quotas per namespace: the bytes of the distinct blobs linked anywhere in the namespace, each counted
// once however many repositories hold it. Checked before bytes are stored (from Content-Length, or a
// mount's size) and again when a blob is admitted (an upload completes, a mount links): that last check
// and the link happen under the namespace's quota lock, so concurrent pushes cannot all pass one check
// and together exceed the quota. A check reads the usage that links maintain (storage/usage.ts), so its
// cost does not grow with what the namespace holds.
import { isStorageError, StorageError } from './errors.ts';
import type { Lock } from './coordination/index.ts';
import { namespaceOf, type Policy, type PolicyStore } from './policies.ts';
import type { Digest } from './reference.ts';
import type { NamespaceUsage, Usage } from './usage.ts';

/** A namespace whose maintained usage garbage collection found wrong, or built for the first time. */
export interface UsageCorrection {
  namespace: string;
  /** What the record said (absent: there was none). */
  was?: Usage;
  now: Usage;
}

export class Quotas {
  constructor(
    private readonly records: NamespaceUsage,
    private readonly policies: PolicyStore,
    private readonly lock: Lock,
  ) {}

  /**
   * Bytes held by the namespace and the distinct blobs counted: the maintained record, else a walk that
   * leaves no record (the berth command may run beside servers whose locks it does not share).
   */
  async usage(namespace: string): Promise<Usage> {
    const maintained = await this.records.read(namespace);
    if (maintained) return maintained;
    const measured = [...(await this.records.measure(namespace)).values()];
    return { bytes: measured.reduce((sum, m) => sum + m.size, 0), blobs: measured.length };
  }

  /** A scope's own policy (PolicyError `none` when it has none), with its namespace's usage when it sets a quota. */
  async policyView(scope: string): Promise<{ scope: string; policy: Policy; usageBytes?: number }> {
    const policy = await this.policies.require(scope);
    if (policy.quotaBytes === undefined) return { scope, policy };
    return { scope, policy, usageBytes: (await this.usage(namespaceOf(scope))).bytes };
  }

  /**
   * Refuses (QuotaExceeded) when `incoming` more bytes would take the repository's namespace past its quota.
   * A blob the namespace already holds adds nothing.
   */
  async check(name: string, incoming: number, digest?: Digest): Promise<void> {
    const namespace = namespaceOf(name);
    const limit = (await this.policies.get(namespace))?.quotaBytes;
    if (limit === undefined) return;
    const usage = await this.records.maintained(namespace);
    if (usage.bytes + incoming <= limit) return;
    if (digest && (await this.records.holds(namespace, digest))) return;
    throw new StorageError(
      { kind: 'QuotaExceeded', namespace, usageBytes: usage.bytes, limitBytes: limit, requestedBytes: incoming },
      `the quota of namespace ${namespace} would be exceeded`,
    );
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

  /**
   * For garbage collection: every namespace with a quota gets its record rebuilt from a walk (which repairs
   * what a crash between a link and its bookkeeping left), and records of namespaces without one are
   * dropped. Returns the records that were missing or wrong.
   */
  async reconcile(): Promise<UsageCorrection[]> {
    let policies: Awaited<ReturnType<PolicyStore['list']>>;
    try {
      policies = await this.policies.list();
    } catch (err) {
      // A policy nobody can read must neither drop a record nor fail the collection that just ran (checks
      // refuse meanwhile): the next run tries again.
      if (isStorageError(err, 'PolicyUnreadable')) return [];
      throw err;
    }
    const withQuota = new Set(policies.filter((p) => p.policy.quotaBytes !== undefined).map((p) => p.scope));
    for (const namespace of await this.records.namespaces()) {
      if (!withQuota.has(namespace)) await this.records.drop(namespace);
    }
    const corrections: UsageCorrection[] = [];
    for (const namespace of withQuota) {
      const { was, now } = await this.records.reconcile(namespace);
      if (was?.bytes !== now.bytes || was.blobs !== now.blobs) corrections.push({ namespace, ...(was ? { was } : {}), now });
    }
    return corrections;
  }
}
