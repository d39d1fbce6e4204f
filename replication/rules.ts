// RuleStore: the replication rules, one document in storage (every replica reads the same), at most
// MAX_RULES. A rule names its remote (an origin, credentials, the other token realms the credentials may
// go to), its direction, what it copies (repository globs, tag filters, platforms, newest N) and when
// (an interval, each push). The remote password is sealed before it is stored and never shown again.
import { z } from 'zod/v3';
import { isValidName, type Lock, type SecretSeal, type StorageDriver } from '../storage/index.ts';
import { originSchema } from '../mirror/config.ts';
import { ReplicationError } from './errors.ts';
import { paths } from './paths.ts';

export const MAX_RULES = 100;
const PLATFORM_RE = /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9.]+)?$/;
/** A repository glob: name characters, `*` (within a component) and `**` (across them). */
const REPOSITORY_GLOB_RE = /^[a-z0-9*][a-z0-9._/*-]{0,254}$/;
const TAG_GLOB_RE = /^[A-Za-z0-9_*?][A-Za-z0-9._*?-]{0,127}$/;

const tagFilter = z
  .object({
    /** Tags matching any of these (`*`, `?`). */
    glob: z.array(z.string().regex(TAG_GLOB_RE, 'expected a tag pattern with * and ?')).max(50).optional(),
    /** Tags matching this regular expression (whole tag). */
    regex: z
      .string()
      .max(200)
      .refine((v) => {
        try {
          new RegExp(v);
          return true;
        } catch {
          return false;
        }
      }, 'expected a regular expression')
      .optional(),
    /** Tags that are versions in this semver range (`>=1.2 <2`, `^3`); a leading v is allowed. */
    semver: z.string().min(1).max(200).optional(),
  })
  .strict();

export const ruleSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected lower-case letters, digits and -, at most 63'),
    direction: z.enum(['pull', 'push']),
    remote: z
      .object({
        url: originSchema,
        username: z.string().min(1).max(256).optional(),
        password: z.string().min(1).max(4096).optional(),
        realms: z.array(originSchema).max(16).default([]),
        timeoutSeconds: z.number().int().min(1).max(600).default(30),
      })
      .strict()
      .refine((r) => (r.username === undefined) === (r.password === undefined), 'username and password go together'),
    /** Repositories on the source side: names, or globs (a remote must then serve /v2/_catalog). */
    repositories: z.array(z.string().regex(REPOSITORY_GLOB_RE, 'expected a repository name or glob')).min(1).max(100),
    /** The namespace the copies go under on the destination side (none: the same names). */
    destination: z.string().refine(isValidName, 'expected a repository namespace').optional(),
    tags: tagFilter.default({}),
    /** os/architecture[/variant]: an image must be one; an index must have one (see reduceIndex). */
    platforms: z.array(z.string().regex(PLATFORM_RE, 'expected os/architecture[/variant]')).max(32).optional(),
    /** Copy an index reduced to the platforms asked for: a NEW index document, with a digest of its own. */
    reduceIndex: z.boolean().default(false),
    /** Only the newest N tags that pass the tag filters (by semver, then by name; see README). */
    newest: z.number().int().min(1).max(10_000).optional(),
    /** A run every this many seconds (0: none). */
    intervalSeconds: z.number().int().min(0).max(30 * 86_400).default(0),
    /** Push rules: a run after each push to a matching repository. */
    onPush: z.boolean().default(false),
    enabled: z.boolean().default(true),
  })
  .strict()
  .refine((r) => !r.onPush || r.direction === 'push', { message: 'onPush is for push rules', path: ['onPush'] })
  .refine((r) => !r.reduceIndex || r.platforms !== undefined, { message: 'reduceIndex needs platforms', path: ['reduceIndex'] });

export type RuleInput = z.input<typeof ruleSchema>;
type ParsedRule = z.output<typeof ruleSchema>;

/** A stored rule: its password sealed. */
export interface Rule extends Omit<ParsedRule, 'remote'> {
  remote: Omit<ParsedRule['remote'], 'password'> & { sealedPassword?: string };
  createdAt: string;
  createdBy?: string;
}

/** What anyone who may see a rule sees: whether it has credentials, never them. */
export type RuleView = Omit<Rule, 'remote'> & { remote: Omit<Rule['remote'], 'sealedPassword'> & { hasPassword: boolean } };

export function viewOf(rule: Rule): RuleView {
  const { sealedPassword, ...remote } = rule.remote;
  return { ...rule, remote: { ...remote, hasPassword: sealedPassword !== undefined } };
}

export class RuleStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    private readonly seal: SecretSeal,
  ) {}

  async all(): Promise<Rule[]> {
    const stored = await this.driver.getContent(paths.rules);
    return stored ? ((JSON.parse(stored.toString('utf8')) as { rules: Rule[] }).rules ?? []) : [];
  }

  async get(name: string): Promise<Rule | undefined> {
    return (await this.all()).find((r) => r.name === name);
  }

  async add(input: unknown, createdBy?: string): Promise<Rule> {
    const parsed = ruleSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ReplicationError('INVALID', `${issue.path.join('.') || 'rule'}: ${issue.message}`);
    }
    const { password, ...remote } = parsed.data.remote;
    const rule: Rule = {
      ...parsed.data,
      remote: { ...remote, ...(password === undefined ? {} : { sealedPassword: await this.seal.seal(password) }) },
      createdAt: new Date().toISOString(),
      ...(createdBy ? { createdBy } : {}),
    };
    return this.change((rules) => {
      if (rules.some((r) => r.name === rule.name)) throw new ReplicationError('EXISTS', `a rule named ${rule.name} exists`);
      if (rules.length >= MAX_RULES) throw new ReplicationError('TOO_MANY', `at most ${MAX_RULES} replication rules`);
      return { rules: [...rules, rule], result: rule };
    });
  }

  async remove(name: string): Promise<Rule> {
    return this.change((rules) => {
      const found = rules.find((r) => r.name === name);
      if (!found) throw notFound(name);
      return { rules: rules.filter((r) => r !== found), result: found };
    });
  }

  /** The remote password in the clear (server code only); undefined without one, or when the sealing key changed. */
  password(rule: Rule): Promise<string | undefined> {
    return rule.remote.sealedPassword === undefined ? Promise.resolve(undefined) : this.seal.open(rule.remote.sealedPassword);
  }

  private change<T>(fn: (rules: Rule[]) => { rules: Rule[]; result: T }): Promise<T> {
    return this.lock.run('replication-rules', async () => {
      const { rules, result } = fn(await this.all());
      await this.driver.putContent(paths.rules, JSON.stringify({ rules }));
      return result;
    });
  }
}

export function notFound(name: string): ReplicationError {
  return new ReplicationError('NOT_FOUND', `no replication rule ${JSON.stringify(name.slice(0, 64))}`);
}
