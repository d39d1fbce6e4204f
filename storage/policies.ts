// Lifecycle policies of a repository or a namespace (the first path segment of repository names): which
// tags are immutable, which tags retention keeps, and the namespace's quota. They live in storage (never
// in one process's memory), so every process and replica, and the berth command, see the same ones.
import { z } from 'zod/v3';
import { StorageError } from './errors.ts';
import type { StorageDriver } from './driver/index.ts';
import { baseName, decodeName, layout } from './layout.ts';
import { isValidName } from './reference.ts';

// Patterns over tags: "*" any run of characters, "?" one; tags have no other special characters.
const TAG_PATTERN_RE = /^[A-Za-z0-9_.*?-]{1,128}$/;
const tagPattern = z.string().regex(TAG_PATTERN_RE, 'expected a tag pattern such as v* (letters, digits, _ . - * ?)');

export const retentionSchema = z
  .object({
    /** Keep the N most recently pushed tags. */
    keepLast: z.number().int().min(0).optional(),
    /** Keep the tags pushed in the last D days. */
    keepDays: z.number().positive().optional(),
    /** Keep the tags that match one of these patterns. */
    keepTags: z.array(tagPattern).optional(),
  })
  .strict();

export const policySchema = z
  .object({
    immutableTags: z.array(tagPattern).optional(),
    retention: retentionSchema.optional(),
    /** Bytes of distinct blobs the namespace may hold (namespaces only). */
    quotaBytes: z.number().int().min(0).optional(),
  })
  .strict();

export type Policy = z.infer<typeof policySchema>;
export type RetentionRule = z.infer<typeof retentionSchema>;

/** The namespace of a repository: its first path segment. */
export function namespaceOf(name: string): string {
  const slash = name.indexOf('/');
  return slash < 0 ? name : name.slice(0, slash);
}

export function matchesTagPattern(tag: string, pattern: string): boolean {
  const source = pattern.replace(/[.-]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.');
  return new RegExp(`^${source}$`).test(tag);
}

export class PolicyError extends Error {
  constructor(
    message: string,
    /** `none`: the scope has no policy; `invalid`: the policy or scope given is not one. */
    readonly kind: 'invalid' | 'none' = 'invalid',
  ) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** What applies to one repository: its own policy and its namespace's, combined. */
export interface EffectivePolicy {
  namespace: string;
  immutableTags: string[];
  /** The repository's own retention rule, else its namespace's. */
  retention?: RetentionRule;
  quotaBytes?: number;
}

export class PolicyStore {
  constructor(private readonly driver: StorageDriver) {}

  async get(scope: string): Promise<Policy | undefined> {
    const raw = await this.driver.getContent(layout.policy(scope));
    if (!raw) return undefined;
    const parsed = policySchema.safeParse(JSON.parse(raw.toString()));
    // A policy file nobody can read must not silently lift a quota or an immutability: refuse writes.
    if (!parsed.success) throw new StorageError({ kind: 'PolicyUnreadable', scope }, `the policy of ${scope} in storage is invalid`);
    return parsed.data;
  }

  /** Validates and stores a scope's policy, replacing the previous one whole. */
  async set(scope: string, policy: unknown): Promise<Policy> {
    if (!isValidName(scope)) throw new PolicyError(`${JSON.stringify(scope)} is not a repository or namespace name`);
    const parsed = policySchema.safeParse(policy);
    if (!parsed.success) {
      throw new PolicyError(parsed.error.issues.map((i) => `${i.path.join('.') || 'policy'}: ${i.message}`).join('; '));
    }
    if (parsed.data.quotaBytes !== undefined && scope.includes('/')) {
      throw new PolicyError(`quotas are set per namespace: use ${namespaceOf(scope)}, not ${scope}`);
    }
    await this.driver.putContent(layout.policy(scope), JSON.stringify(parsed.data));
    return parsed.data;
  }

  async remove(scope: string): Promise<boolean> {
    if (!isValidName(scope)) return false;
    return this.driver.delete(layout.policy(scope));
  }

  /** The scope's own policy, or a PolicyError (`none`) when it has none. */
  async require(scope: string): Promise<Policy> {
    const own = isValidName(scope) ? await this.get(scope) : undefined;
    if (!own) throw new PolicyError(`${scope.slice(0, 300)} has no policy`, 'none');
    return own;
  }

  /** Removes the scope's policy, or a PolicyError (`none`) when it has none. */
  async removeExisting(scope: string): Promise<void> {
    if (!(await this.remove(scope))) throw new PolicyError(`${scope.slice(0, 300)} has no policy`, 'none');
  }

  async list(): Promise<Array<{ scope: string; policy: Policy }>> {
    const all: Array<{ scope: string; policy: Policy }> = [];
    for (const path of await this.driver.list(layout.policiesDir)) {
      const scope = decodeName(baseName(path));
      const policy = isValidName(scope) ? await this.get(scope) : undefined;
      if (policy) all.push({ scope, policy });
    }
    return all;
  }

  async forRepository(name: string): Promise<EffectivePolicy> {
    const namespace = namespaceOf(name);
    const [own, shared] = await Promise.all([this.get(name), namespace === name ? undefined : this.get(namespace)]);
    return {
      namespace,
      immutableTags: [...(shared?.immutableTags ?? []), ...(own?.immutableTags ?? [])],
      retention: own?.retention ?? shared?.retention,
      quotaBytes: (namespace === name ? own : shared)?.quotaBytes,
    };
  }

  async isImmutable(name: string, tag: string): Promise<boolean> {
    const { immutableTags } = await this.forRepository(name);
    return immutableTags.some((pattern) => matchesTagPattern(tag, pattern));
  }
}
