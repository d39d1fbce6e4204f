// Accounts, kept durably in storage (the same disk or bucket as the images, so one backup holds both):
// users, organisations with members and roles, personal access tokens, robot accounts and refresh tokens.
// Secrets are stored only as hashes; a generated secret is shown once, when it is made.
import { baseName, layout, type Lock, type StorageDriver } from '../storage/index.ts';
import { ACTIONS, type Action, type Principal, type Role, type ScopeGrant } from './policy.ts';
import { hashPassword, hashSecret, newId, newSecret, secretMatches, verifyPassword } from './secrets.ts';

/** User, organisation and robot names: one path component of a repository name, so a namespace. */
const ACCOUNT_NAME_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const ROBOT_NAME_RE = /^([a-z0-9]+(?:[._-][a-z0-9]+)*)\+([a-z0-9]+(?:[._-][a-z0-9]+)*)$/;
const ID_RE = /^[A-Za-z0-9_-]{8,64}$/;
/** `library` belongs to the admins whatever else is reserved (config.ts holds the configurable list). */
const ALWAYS_RESERVED = 'library';
/** Sign-ups one address may make in an hour (the API and the web form share the count): no mass-registering of namespaces. */
export const SIGN_UPS_PER_ADDRESS_PER_HOUR = 10;
export const signUpCounterKey = (address: string) => `signup:${address}`;
export const PAT_PREFIX = 'berth_pat.';
export const REFRESH_PREFIX = 'berth_rt.';

export interface User {
  name: string;
  passwordHash: string;
  admin: boolean;
  createdAt: string;
  /**
   * Renewed when the password changes (random, so a user removed and made again does not revive old
   * tokens): refresh tokens obtained with an older password stop working.
   */
  epoch: string;
  /** Present when the directory checks the user's password (passwordHash is then empty): what it said last. */
  directory?: DirectoryFacts;
}

/** What the directory (or the OpenID provider) said of a user at its last check. */
export interface DirectoryFacts {
  /** Which source the user is of: an LDAP directory when absent (records made before there were two). */
  source?: 'oidc';
  /** Who the user is at the source: their DN, or the provider's subject (`sub`). */
  dn: string;
  checkedAt: string;
  displayName?: string;
  email?: string;
  /** The groups the provider named at the last check (an OpenID provider's user only). */
  groups?: string[];
  /** The provider's refresh token, sealed (an OpenID provider's user only). */
  sealedRefreshToken?: string;
}

export interface Organisation {
  name: string;
  members: Record<string, Role>;
  createdAt: string;
}

interface Expiring {
  scopes: ScopeGrant[];
  secretHash: string;
  createdAt: string;
  expiresAt?: string;
  revokedAt?: string;
}

export interface PersonalAccessToken extends Expiring {
  id: string;
  owner: string;
  description: string;
}

export interface Robot extends Expiring {
  /** `org+name`: the user name the robot logs in with. */
  name: string;
  namespace: string;
  /** Random per robot made (absent on robots made before it existed): one removed and made again is another. */
  epoch?: string;
}

type Credential = { kind: 'none' } | { kind: 'password'; epoch: string } | { kind: 'pat'; id: string } | { kind: 'robot'; epoch?: string };

/**
 * Who holds a name, by its canonical form: names that differ only by case, dots, dashes or underscores
 * are one name, so that nobody can pass as another (`new-co` for `newco`). A removed user's claim stays,
 * retired: what granted through the name (its namespace, links others made to it) must not pass to a
 * stranger, so only an admin can give the name out again.
 */
interface NameClaim {
  name: string;
  kind: 'user' | 'organisation';
  retiredAt?: string;
}

interface RefreshRecord {
  id: string;
  secretHash: string;
  subject: string;
  credential: Credential;
  createdAt: string;
  expiresAt: string;
}

/** Who a set of credentials proves the caller to be, and what limits the credential itself carries. */
export interface Authenticated {
  principal: Principal;
  limit?: ScopeGrant[];
  credential: Credential;
}

/**
 * Why an account change was refused: a name, password or scope that is not valid; a reserved name; a
 * name held (or too like one held), or a robot that exists; no such account or credential (or none the
 * asker may know of); known to the asker, but not theirs to change.
 */
export type AccountRefusal = 'invalid' | 'reserved' | 'taken' | 'unknown' | 'denied';

export class AccountError extends Error {
  constructor(
    readonly refusal: AccountRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'AccountError';
  }
}

export function isAccountName(name: string): boolean {
  return name.length >= 2 && name.length <= 64 && ACCOUNT_NAME_RE.test(name);
}

/** The form two names that look alike share: lower case, without dots, dashes and underscores. */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/[._-]/g, '');
}

export interface AccountOptions {
  /** Words no one may take as a user or organisation name (nor a look-alike of one); `library` always is. */
  reserved: readonly string[];
  /** Whether repositories exist in a namespace whose canonical name is this (what sign-up may not claim). */
  namespaceExists: (canonical: string) => Promise<boolean>;
}

/** Parses `repository:<pattern>:<actions>` as given on the command line for tokens and robots. */
export function parseScopeGrant(text: string): ScopeGrant {
  const match = /^repository:([^:]+):([a-z*,]+)$/.exec(text);
  const pattern = match?.[1];
  const actions = match?.[2]?.split(',');
  const validPattern = pattern === '*' || (pattern !== undefined && /^[a-z0-9]+(?:[._/-][a-z0-9]+)*(?:\/\*)?$/.test(pattern));
  if (!match || !validPattern || !actions?.every((a) => a === '*' || (ACTIONS as string[]).includes(a))) {
    throw new AccountError('invalid', `scope ${JSON.stringify(text)}: expected repository:<name, prefix/* or *>:<pull,push,delete or *>`);
  }
  return { pattern: pattern!, actions: actions.includes('*') ? [...ACTIONS] : (actions as Action[]) };
}

/** The scopes given as text, or the default when none are (what a token or robot may do unless told). */
export function parseScopeGrants(texts: readonly string[] | undefined, fallback: string): ScopeGrant[] {
  return (texts?.length ? texts : [fallback]).map(parseScopeGrant);
}

/** A personal access token may do what its owner may, unless its scopes say less. */
export const TOKEN_DEFAULT_SCOPE = 'repository:*:pull,push,delete';
/** A robot pulls from its namespace, unless its scopes say more. */
export const robotDefaultScope = (namespace: string) => `repository:${namespace}/*:pull`;

/** A lifetime: `30d`, `12h`, `90m`, `3600s`, or `never` (undefined: no expiry). */
export function parseExpiry(value: string, now = Date.now()): Date | undefined {
  if (value === 'never') return undefined;
  const match = /^(\d{1,6})([smhd])$/.exec(value);
  if (!match) throw new AccountError('invalid', 'expected a lifetime like 30d, 12h, 90m, 3600s, or never');
  const seconds = Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
  return new Date(now + seconds * 1000);
}

/** `org+name` as its namespace and name. */
export function splitRobotName(full: string): { namespace: string; name: string } {
  const plus = full.indexOf('+');
  if (plus < 0) throw new AccountError('invalid', `a robot is named <namespace>+<name>, not ${JSON.stringify(full.slice(0, 80))}`);
  return { namespace: full.slice(0, plus), name: full.slice(plus + 1) };
}

/** A token or robot as listed: everything but what checks its secret. */
export function withoutSecret<T extends { secretHash: string }>(record: T): Omit<T, 'secretHash'> {
  const { secretHash: _hash, ...rest } = record;
  return rest;
}

const ROLES: readonly Role[] = ['read', 'write', 'admin'];
/** A token's description is a line in a list. */
const MAX_DESCRIPTION = 300;
/**
 * Revoked tokens of a user, and revoked robots of a namespace, kept to be shown as revoked; older ones are
 * removed, so that creating and revoking in a loop cannot grow a list (and what reading it costs) without bound.
 */
export const MAX_REVOKED_KEPT = 100;

/** A record's name, from its path: the file's name without `.json`. */
const recordName = (path: string) => baseName(path).replace(/\.json$/, '');

/** A robot's path, from its `org+name`. */
const robotPath = (name: string) => {
  const plus = name.indexOf('+');
  return layout.robot(name.slice(0, plus), name.slice(plus + 1));
};

const expired = (record: { expiresAt?: string; revokedAt?: string }, now = Date.now()) =>
  record.revokedAt !== undefined || (record.expiresAt !== undefined && Date.parse(record.expiresAt) <= now);

export class AccountStore {
  private readonly reserved: Set<string>;
  /** The indexes made complete (or being made) by this process, by their marker's path. */
  private readonly completions = new Map<string, Promise<void>>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    private readonly options: AccountOptions = { reserved: [], namespaceExists: async () => false },
  ) {
    this.reserved = new Set([ALWAYS_RESERVED, ...options.reserved].map(canonicalName));
  }

  private async read<T>(path: string): Promise<T | undefined> {
    const content = await this.driver.getContent(path);
    return content ? (JSON.parse(content.toString()) as T) : undefined;
  }

  private write(path: string, value: unknown): Promise<void> {
    return this.driver.putContent(path, JSON.stringify(value, null, 2));
  }

  private async names(dir: string): Promise<string[]> {
    return (await this.driver.list(dir)).map(recordName).sort();
  }

  /** The records named in `dir` (read by `read`, from each name) that `keep` accepts, in the names' order. */
  private async recordsIn<T>(dir: string, read: (name: string) => Promise<T | undefined>, keep: (record: T) => boolean): Promise<T[]> {
    const found: T[] = [];
    for (const name of await this.names(dir)) {
      const record = await read(name);
      if (record !== undefined && keep(record)) found.push(record);
    }
    return found;
  }

  // ---- users -------------------------------------------------------------------------------------

  async user(name: string): Promise<User | undefined> {
    return isAccountName(name) ? this.read<User>(layout.user(name)) : undefined;
  }

  users(): Promise<string[]> {
    return this.names(layout.usersDir);
  }

  /**
   * One page of user names in the order of their records' file names, after `after` (a name): a page
   * costs its own size, not the number of users.
   */
  usersPage(limit: number, after?: string): Promise<string[]> {
    return this.namesPage(layout.usersDir, limit, after);
  }

  private async namesPage(dir: string, limit: number, after?: string): Promise<string[]> {
    return (await this.driver.list(dir, { after: after === undefined ? undefined : `${after}.json`, limit })).map(recordName);
  }

  /**
   * Claims `name` for a new user or organisation, then runs `create`, under the lock of its canonical
   * form. Refused: an invalid or reserved name, one held by a user or organisation or too like one; and
   * for a sign-up (not an admin) also a retired name, and a namespace that repositories already exist in.
   */
  private claim<T>(name: string, kind: NameClaim['kind'], by: 'admin' | 'sign-up', create: () => Promise<T>): Promise<T> {
    if (!isAccountName(name)) throw new AccountError('invalid', `${JSON.stringify(name)} is not a valid name: 2 to 64 of a-z, 0-9, and . _ - between them`);
    const canonical = canonicalName(name);
    if (this.reserved.has(canonical)) throw new AccountError('reserved', `${name} is reserved`);
    return this.lock.run(`auth:claim:${canonical}`, async () => {
      await this.completeClaims();
      const held = await this.read<NameClaim>(layout.nameClaim(canonical));
      if ((held && !held.retiredAt) || (await this.user(name)) || (await this.organisation(name))) {
        throw new AccountError('taken', held && held.name !== name ? `${name} is taken: it is too like ${held.name}` : `${name} is taken`);
      }
      if (by === 'sign-up' && held) throw new AccountError('taken', `${name} is taken: it was an account's name, which only an administrator can give out again`);
      if (by === 'sign-up' && (await this.options.namespaceExists(canonical))) throw new AccountError('taken', `${name} is taken: repositories exist under that name`);
      await this.write(layout.nameClaim(canonical), { name, kind } satisfies NameClaim);
      return create();
    });
  }

  /**
   * Makes an index cover what was stored before it existed: `fill` runs once per storage, under a lock,
   * until `marker` is written after it; each process checks the marker once. A failure is tried again.
   */
  private complete(marker: string, fill: () => Promise<void>): Promise<void> {
    let done = this.completions.get(marker);
    if (!done) {
      done = (async () => {
        if (await this.driver.stat(marker)) return;
        await this.lock.run(`auth:complete:${marker}`, async () => {
          if (await this.driver.stat(marker)) return;
          await fill();
          await this.driver.putContent(marker, '');
        });
      })().catch((err: unknown) => {
        this.completions.delete(marker);
        throw err;
      });
      this.completions.set(marker, done);
    }
    return done;
  }

  /** Claims for the users and organisations made before claims existed: once per storage, by a listing. */
  private completeClaims(): Promise<void> {
    return this.complete(layout.nameClaimsComplete, async () => {
      const named = [
        ...(await this.users()).map((name) => ({ name, kind: 'user' as const })),
        ...(await this.organisations()).map((name) => ({ name, kind: 'organisation' as const })),
      ];
      for (const { name, kind } of named) {
        if (!isAccountName(name) || (await this.driver.stat(layout.nameClaim(canonicalName(name))))) continue;
        await this.write(layout.nameClaim(canonicalName(name)), { name, kind } satisfies NameClaim);
      }
    });
  }

  /** A user made by an admin: may take a removed user's name, or a namespace an admin already pushed to. */
  addUser(name: string, password: string, admin = false): Promise<User> {
    return this.createUser(name, password, admin, 'admin');
  }

  /** A user who signs themselves up: only a name that is nobody's, was nobody's, and looks like nobody's. */
  signUp(name: string, password: string): Promise<User> {
    return this.createUser(name, password, false, 'sign-up');
  }

  private async createUser(name: string, password: string, admin: boolean, by: 'admin' | 'sign-up'): Promise<User> {
    if (password.length < 8) throw new AccountError('invalid', 'a password needs at least 8 characters');
    const passwordHash = await hashPassword(password);
    return this.claim(name, 'user', by, async () => {
      const user: User = { name, passwordHash, admin, createdAt: new Date().toISOString(), epoch: newId() };
      await this.write(layout.user(name), user);
      return user;
    });
  }

  /**
   * The record of a user whose password the directory checks, made at their first sign-in (the name claimed
   * as an admin would: the directory is the administrators') and renewed at each check. Undefined when a
   * local user holds the name: a local account is never taken over by the directory.
   */
  async directoryUser(name: string, directory: DirectoryFacts): Promise<User | undefined> {
    if (!(await this.user(name))) {
      const made = await this.claim(name, 'user', 'admin', async () => {
        const user: User = { name, passwordHash: '', admin: false, createdAt: new Date().toISOString(), epoch: newId(), directory };
        await this.write(`/auth/users/${name}.json`, user);
        return user;
      }).catch((err: unknown) => {
        // Made meanwhile by a sign-in racing this one (renewed below), or the name is not free.
        if (err instanceof AccountError) return undefined;
        throw err;
      });
      if (made) return made;
    }
    return this.lock.run(`auth:name:${name}`, async () => {
      const user = await this.user(name);
      // Another source's user keeps their name: an LDAP user is never taken over by a provider's, nor back.
      if (!user?.directory || user.directory.source !== directory.source) return undefined;
      const renewed = { ...user, directory };
      await this.write(`/auth/users/${name}.json`, renewed);
      return renewed;
    });
  }

  async setPassword(name: string, password: string): Promise<void> {
    if (password.length < 8) throw new AccountError('invalid', 'a password needs at least 8 characters');
    const passwordHash = await hashPassword(password);
    await this.lock.run(`auth:name:${name}`, async () => {
      const user = await this.user(name);
      if (!user) throw new AccountError('unknown', `no user ${name}`);
      await this.write(layout.user(name), { ...user, passwordHash, epoch: newId() });
    });
  }

  async setAdmin(name: string, admin: boolean): Promise<void> {
    await this.lock.run(`auth:name:${name}`, async () => {
      const user = await this.user(name);
      if (!user) throw new AccountError('unknown', `no user ${name}`);
      await this.write(layout.user(name), { ...user, admin });
    });
  }

  /**
   * Removes the user and everything that granted through the name: their organisation roles, the robots
   * of their namespace and their personal access tokens. Refresh tokens, sessions and cached Basic
   * credentials die with the account (each is checked against it when used). The name stays claimed,
   * retired: only an admin can make an account of it again.
   */
  async removeUser(name: string): Promise<{ roles: string[]; robots: string[]; tokens: number }> {
    return this.lock.run(`auth:name:${name}`, async () => {
      if (!(await this.user(name))) throw new AccountError('unknown', `no user ${name}`);
      const roles: string[] = [];
      for (const org of await this.organisationsOf(name)) {
        await this.setMember(org.name, name, undefined);
        roles.push(org.name);
      }
      await this.driver.delete(layout.membershipsOf(name));
      const robots = (await this.names(layout.robotsOf(name))).map((robot) => `${name}+${robot}`);
      for (const robot of robots) await this.driver.delete(robotPath(robot));
      const tokens = await this.tokensOf(name);
      for (const token of tokens) await this.driver.delete(layout.accessToken(token.id));
      await this.driver.delete(layout.accessTokensOf(name));
      const canonical = canonicalName(name);
      await this.lock.run(`auth:claim:${canonical}`, () =>
        this.write(layout.nameClaim(canonical), { name, kind: 'user', retiredAt: new Date().toISOString() } satisfies NameClaim),
      );
      await this.driver.delete(layout.user(name));
      return { roles, robots, tokens: tokens.length };
    });
  }

  // ---- organisations -----------------------------------------------------------------------------

  async organisation(name: string): Promise<Organisation | undefined> {
    return isAccountName(name) ? this.read<Organisation>(layout.organisation(name)) : undefined;
  }

  organisations(): Promise<string[]> {
    return this.names(layout.organisationsDir);
  }

  /** One page of organisation names after `after`, as usersPage gives users. */
  organisationsPage(limit: number, after?: string): Promise<string[]> {
    return this.namesPage(layout.organisationsDir, limit, after);
  }

  async addOrganisation(name: string, owner?: string): Promise<Organisation> {
    if (owner !== undefined && !(await this.user(owner))) throw new AccountError('unknown', `no user ${owner}`);
    return this.claim(name, 'organisation', 'admin', async () => {
      const org: Organisation = { name, members: owner ? { [owner]: 'admin' } : {}, createdAt: new Date().toISOString() };
      if (owner) await this.fileMembership(owner, name);
      await this.write(layout.organisation(name), org);
      return org;
    });
  }

  /**
   * The organisations `user` is a member of, from their memberships folder: the cost grows with their
   * organisations, not with every organisation. Each is checked against the organisation's own record.
   */
  async organisationsOf(user: string): Promise<Organisation[]> {
    if (!isAccountName(user)) return [];
    await this.completeMemberships();
    return this.recordsIn(layout.membershipsOf(user), (name) => this.organisation(name), (org) => org.members[user] !== undefined);
  }

  /** Files a membership before the organisation's record names it: a crash leaves at most an entry the record denies. */
  private async fileMembership(user: string, organisation: string): Promise<void> {
    await this.completeMemberships();
    await this.driver.putContent(layout.membership(user, organisation), '');
  }

  /** Memberships of the organisations made before the folders existed: once per storage, by a listing. */
  private completeMemberships(): Promise<void> {
    return this.complete(layout.membershipsComplete, async () => {
      for (const name of await this.organisations()) {
        const org = await this.organisation(name);
        for (const user of Object.keys(org?.members ?? {})) {
          if (isAccountName(user)) await this.driver.putContent(layout.membership(user, name), '');
        }
      }
    });
  }

  /** Sets a member's role, or removes the member when role is undefined. */
  async setMember(orgName: string, userName: string, role: Role | undefined): Promise<Organisation> {
    if (role !== undefined && !ROLES.includes(role)) throw new AccountError('invalid', `a role is read, write or admin, not ${JSON.stringify(String(role).slice(0, 40))}`);
    if (role !== undefined && !(await this.user(userName))) throw new AccountError('unknown', `no user ${userName}`);
    return this.lock.run(`auth:name:${orgName}`, async () => {
      const org = await this.organisation(orgName);
      if (!org) throw new AccountError('unknown', `no organisation ${orgName}`);
      const members = { ...org.members };
      if (role) members[userName] = role;
      else delete members[userName];
      const updated = { ...org, members };
      if (role) await this.fileMembership(userName, orgName);
      await this.write(layout.organisation(orgName), updated);
      if (!role && isAccountName(userName)) await this.driver.delete(layout.membership(userName, orgName));
      return updated;
    });
  }

  // ---- personal access tokens and robots ---------------------------------------------------------

  /** Creates a personal access token; the returned secret is the only time it is seen. */
  async createToken(owner: string, description: string, scopes: ScopeGrant[], expiresAt?: Date): Promise<{ token: PersonalAccessToken; secret: string }> {
    if (typeof description !== 'string' || description.length > MAX_DESCRIPTION) throw new AccountError('invalid', `a token's description is text of at most ${MAX_DESCRIPTION} characters`);
    if (!(await this.user(owner))) throw new AccountError('unknown', `no user ${owner}`);
    const id = newId();
    const secret = newSecret();
    const token: PersonalAccessToken = {
      id,
      owner,
      description,
      scopes,
      secretHash: hashSecret(secret),
      createdAt: new Date().toISOString(),
      expiresAt: expiresAt?.toISOString(),
    };
    await this.completeTokenOwners();
    // The owner's entry first: a crash between the two leaves an entry without a token (skipped when
    // listed), never a token its owner's list misses.
    await this.driver.putContent(layout.accessTokenOf(owner, id), '');
    await this.write(layout.accessToken(id), token);
    return { token, secret: `${PAT_PREFIX}${id}.${secret}` };
  }

  async token(id: string): Promise<PersonalAccessToken | undefined> {
    return ID_RE.test(id) ? this.read<PersonalAccessToken>(layout.accessToken(id)) : undefined;
  }

  /** The user's tokens, read from their own folder: the cost grows with their tokens, not with everyone's. */
  async tokensOf(owner: string): Promise<PersonalAccessToken[]> {
    if (!isAccountName(owner)) return [];
    await this.completeTokenOwners();
    return this.recordsIn(layout.accessTokensOf(owner), (id) => this.token(id), (token) => token.owner === owner);
  }

  /** Owners' entries for the tokens made before they existed: once per storage, by a listing of every token. */
  private completeTokenOwners(): Promise<void> {
    return this.complete(layout.accessTokenOwnersComplete, async () => {
      for (const id of await this.names(layout.accessTokensDir)) {
        const token = await this.token(id);
        if (token && isAccountName(token.owner)) await this.driver.putContent(layout.accessTokenOf(token.owner, token.id), '');
      }
    });
  }

  async createRobot(namespace: string, name: string, scopes: ScopeGrant[], expiresAt?: Date): Promise<{ robot: Robot; secret: string }> {
    const full = `${namespace}+${name}`;
    if (!ROBOT_NAME_RE.test(full)) throw new AccountError('invalid', `${JSON.stringify(full)} is not a valid robot name`);
    if (!(await this.organisation(namespace)) && !(await this.user(namespace))) throw new AccountError('unknown', `no organisation or user ${namespace}`);
    return this.lock.run(`auth:robot:${full}`, async () => {
      if (await this.robot(full)) throw new AccountError('taken', `robot ${full} exists`);
      const secret = newSecret();
      const robot: Robot = {
        name: full,
        namespace,
        epoch: newId(),
        scopes,
        secretHash: hashSecret(secret),
        createdAt: new Date().toISOString(),
        expiresAt: expiresAt?.toISOString(),
      };
      await this.write(robotPath(full), robot);
      return { robot, secret };
    });
  }

  /** The robots of a namespace (revoked and expired ones too). */
  async robotsOf(namespace: string): Promise<Robot[]> {
    if (!isAccountName(namespace)) return [];
    return this.recordsIn(layout.robotsOf(namespace), (name) => this.robot(`${namespace}+${name}`), () => true);
  }

  async robot(name: string): Promise<Robot | undefined> {
    return ROBOT_NAME_RE.test(name) ? this.read<Robot>(robotPath(name)) : undefined;
  }

  /** Revokes a personal access token (by id) or a robot (by `org+name`). */
  async revoke(idOrRobot: string): Promise<'token' | 'robot'> {
    const revokedAt = new Date().toISOString();
    const robot = await this.robot(idOrRobot);
    if (robot) {
      await this.write(robotPath(robot.name), { ...robot, revokedAt });
      await pruneRevoked(await this.robotsOf(robot.namespace), (old) => this.driver.delete(robotPath(old.name)));
      return 'robot';
    }
    const token = await this.token(idOrRobot);
    if (!token) throw new AccountError('unknown', `no token or robot ${idOrRobot}`);
    await this.write(layout.accessToken(token.id), { ...token, revokedAt });
    await pruneRevoked(await this.tokensOf(token.owner), async (old) => {
      await this.driver.delete(layout.accessToken(old.id));
      if (isAccountName(old.owner)) await this.driver.delete(layout.accessTokenOf(old.owner, old.id));
    });
    return 'token';
  }

  // ---- authentication ----------------------------------------------------------------------------

  /**
   * Checks a user name and a password, personal access token or robot secret. Undefined when they do
   * not prove anything; each path spends a comparable, constant-time check whether the account exists or not.
   */
  async authenticate(username: string, password: string): Promise<Authenticated | undefined> {
    if (username.includes('+')) {
      const robot = await this.robot(username);
      const ok = secretMatches(robot?.secretHash ?? '0'.repeat(64), password);
      if (!robot || !ok || expired(robot)) return undefined;
      return { principal: { kind: 'robot', name: robot.name, namespace: robot.namespace }, limit: robot.scopes, credential: { kind: 'robot', epoch: robot.epoch } };
    }
    if (password.startsWith(PAT_PREFIX)) {
      const [id, secret] = password.slice(PAT_PREFIX.length).split('.');
      const token = id ? await this.token(id) : undefined;
      const ok = secretMatches(token?.secretHash ?? '0'.repeat(64), secret ?? '');
      if (!token || !ok || token.owner !== username || expired(token)) return undefined;
      const user = await this.user(username);
      if (!user) return undefined;
      return { principal: { kind: 'user', name: user.name, admin: user.admin }, limit: token.scopes, credential: { kind: 'pat', id: token.id } };
    }
    const user = await this.user(username);
    if (!(await verifyPassword(user?.passwordHash, password)) || !user) return undefined;
    return { principal: { kind: 'user', name: user.name, admin: user.admin }, credential: { kind: 'password', epoch: user.epoch } };
  }

  /** A refresh token for what `who` authenticated with: it dies with that credential (revoked, expired, password changed). */
  async createRefreshToken(who: Authenticated, subject: string, ttlSeconds: number): Promise<string> {
    const id = newId(12);
    const secret = newSecret();
    const now = Date.now();
    const record: RefreshRecord = {
      id,
      secretHash: hashSecret(secret),
      subject,
      credential: who.credential,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ttlSeconds * 1000).toISOString(),
    };
    await this.write(layout.refreshToken(id), record);
    return `${REFRESH_PREFIX}${id}.${secret}`;
  }

  /** Who a refresh token stands for, if it and the credential it came from are still good. */
  async refresh(presented: string): Promise<Authenticated | undefined> {
    if (!presented.startsWith(REFRESH_PREFIX)) return undefined;
    const [id, secret] = presented.slice(REFRESH_PREFIX.length).split('.');
    const record = id && ID_RE.test(id) ? await this.read<RefreshRecord>(layout.refreshToken(id)) : undefined;
    const ok = secretMatches(record?.secretHash ?? '0'.repeat(64), secret ?? '');
    if (!record || !ok) return undefined;
    if (expired(record)) {
      await this.driver.delete(layout.refreshToken(record.id));
      return undefined;
    }
    return this.current(record.subject, record.credential);
  }

  /**
   * Who `subject` is now, if the credential they proved themselves with still stands: the password not
   * changed since, the token or robot neither revoked, expired nor removed and made again, the account
   * there. Read from storage each time (one or two small documents), so a change made by any process,
   * an admin command included, counts from the next request.
   */
  async current(subject: string, credential: Credential): Promise<Authenticated | undefined> {
    if (credential.kind === 'none') return undefined;
    if (credential.kind === 'robot') {
      const robot = await this.robot(subject);
      if (!robot || expired(robot) || robot.epoch !== credential.epoch) return undefined;
      return { principal: { kind: 'robot', name: robot.name, namespace: robot.namespace }, limit: robot.scopes, credential };
    }
    const user = await this.user(subject);
    if (!user) return undefined;
    const principal: Principal = { kind: 'user', name: user.name, admin: user.admin };
    if (credential.kind === 'password') return credential.epoch === user.epoch ? { principal, credential } : undefined;
    const token = await this.token(credential.id);
    if (!token || token.owner !== user.name || expired(token)) return undefined;
    return { principal, limit: token.scopes, credential };
  }

  /** For the expiry sweep: whether the refresh token stored at `path` has expired (or cannot be read). */
  async refreshTokenExpired(path: string): Promise<boolean> {
    const record = await this.read<RefreshRecord>(path).catch(() => ({ expiresAt: '' }) as Partial<RefreshRecord>);
    return record !== undefined && !(Date.parse(record.expiresAt ?? '') > Date.now());
  }

  /** The principal's role in the organisation `namespace`, if it is one and they are a member. */
  async roleIn(namespace: string, principal: Principal): Promise<Role | undefined> {
    if (principal.kind !== 'user') return undefined;
    return (await this.organisation(namespace))?.members[principal.name];
  }
}

/** Removes the revoked records beyond the newest MAX_REVOKED_KEPT (by when they were revoked). */
async function pruneRevoked<T extends { revokedAt?: string }>(records: T[], remove: (record: T) => Promise<unknown>): Promise<void> {
  const revoked = records.filter((r) => r.revokedAt !== undefined).sort((a, b) => (a.revokedAt! < b.revokedAt! ? 1 : a.revokedAt! > b.revokedAt! ? -1 : 0));
  for (const old of revoked.slice(MAX_REVOKED_KEPT)) await remove(old);
}
