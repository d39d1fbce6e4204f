// A company directory (LDAP, Active Directory) that checks passwords: the user is searched with a service
// account, then the directory is asked to bind as them with the password typed. The directory answers
// who the user is (name, e-mail) and which groups they are in; it never learns anything of Berth's.
// Each check is one short connection (ldapts), bounded by a timeout, so a directory that is down or
// silent costs a sign-in a few seconds and a 503, never a hang.
import type { Client, ClientOptions, Entry } from 'ldapts';

// ldapts is loaded with the first directory check: a registry without BERTH_LDAP_URL never carries it.
type Ldapts = typeof import('ldapts');
let loaded: Ldapts | undefined;
async function ldapts(): Promise<Ldapts> {
  return (loaded ??= await import('ldapts'));
}
/** The module, once a session has loaded it (every use below runs inside a session). */
const lib = (): Ldapts => loaded!;
import { rolesFromGroups, type GroupRole } from './group-roles.ts';
import type { Role } from './policy.ts';

/** What the directory says of a user. */
export interface DirectoryEntry {
  dn: string;
  /** The Berth user name: the username attribute's value, in lower case. */
  username: string;
  displayName?: string;
  email?: string;
  /** The DNs of the user's groups, normalised (normalizeDn); an OpenID provider's group names. */
  groups: string[];
  /** An OpenID provider's refresh token for the user, sealed: what reads them again without a browser. */
  sealedRefreshToken?: string;
}

export type PasswordCheck = { ok: true; entry: DirectoryEntry } | { ok: false; reason: 'no such user' | 'wrong password' | 'ambiguous user' };

/** The directory could not answer (down, silent, refused the service account, TLS not trusted): nobody is decided. */
export class DirectoryUnavailableError extends Error {
  constructor(reason: string, who = 'the directory') {
    super(`${who} does not answer: ${reason}`);
    this.name = 'DirectoryUnavailableError';
  }
}

/**
 * A source of identities whose users have a local record here (DirectoryAccounts): read again once their
 * last check is old, their groups as organisation roles. `kind` tells its users from another source's.
 */
export interface IdentitySource {
  readonly kind: 'ldap' | 'oidc';
  /** The user as the source has them now, or undefined: removed or disabled. Throws DirectoryUnavailableError. */
  lookup(username: string): Promise<DirectoryEntry | undefined>;
  /** Organisation → role, the highest the entry's groups give, for every organisation the mapping names. */
  roles(entry: DirectoryEntry): Map<string, Role | undefined>;
  /** How long a user's entry and roles, once read, stand for tokens and sessions in use. */
  readonly refreshMs: number;
}

/** What AuthService asks of a directory that checks passwords: the shared contract of LDAP (and any later one). */
export interface Directory extends IdentitySource {
  /** Whether `password` is the user's, and who they are then. Throws DirectoryUnavailableError. */
  verify(username: string, password: string): Promise<PasswordCheck>;
}

/** The directory's settings (server/config.ts reads them: BERTH_LDAP_*). */
export interface LdapOptions {
  url: string;
  startTls: boolean;
  /** The PEM certificates to trust (else the system's). */
  ca?: string;
  timeoutMs: number;
  bindDn: string;
  /** A function, so that no log line or dump of the settings ever shows the service account's password. */
  bindPassword: () => string;
  baseDn: string;
  userFilter: string;
  usernameAttribute: string;
  displayNameAttribute: string;
  emailAttribute: string;
  groupBaseDn: string;
  groupFilter: string;
  /** Group DN → organisation → role. */
  groupRoles: readonly GroupRole[];
  refreshSeconds: number;
}

/** Directory connections open at once: more sign-ins than this at the same moment get a 503, not a queue. */
const MAX_CONNECTIONS = 32;
/** Groups read per user at most (an OpenID provider's claim too). */
export const MAX_GROUPS = 1000;

/** A DN in one spelling for comparisons: lower case, no spaces around separators. */
export function normalizeDn(dn: string): string {
  return dn.trim().toLowerCase().replace(/\s*([,=+])\s*/g, '$1');
}

const first = (value: Entry[string] | undefined): string | undefined => {
  const v = Array.isArray(value) ? value[0] : value;
  return v === undefined ? undefined : Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
};

export class LdapDirectory implements Directory {
  readonly kind = 'ldap';
  readonly refreshMs: number;
  private open = 0;

  constructor(private readonly options: LdapOptions) {
    this.refreshMs = options.refreshSeconds * 1000;
  }

  roles(entry: DirectoryEntry): Map<string, Role | undefined> {
    return rolesFromGroups(entry.groups, this.options.groupRoles, normalizeDn);
  }

  async verify(username: string, password: string): Promise<PasswordCheck> {
    // An empty password is an unauthenticated bind, which LDAP lets succeed for any DN: never a login.
    if (password === '') return { ok: false, reason: 'wrong password' };
    return this.session(async (client) => {
      const found = await this.findUser(client, username);
      if (found.length !== 1) return { ok: false, reason: found.length === 0 ? 'no such user' : 'ambiguous user' };
      const entry = await this.describe(client, found[0]!);
      try {
        await client.bind(entry.dn, password);
      } catch (err) {
        if (err instanceof lib().InvalidCredentialsError) return { ok: false, reason: 'wrong password' };
        throw err;
      }
      return { ok: true, entry };
    });
  }

  async lookup(username: string): Promise<DirectoryEntry | undefined> {
    return this.session(async (client) => {
      const found = await this.findUser(client, username);
      return found.length === 1 ? this.describe(client, found[0]!) : undefined;
    });
  }

  /** Runs `work` on a connection bound as the service account; every failure of the directory becomes DirectoryUnavailableError. */
  private async session<T>(work: (client: Client) => Promise<T>): Promise<T> {
    if (this.open >= MAX_CONNECTIONS) throw new DirectoryUnavailableError('too many directory requests at once');
    this.open++;
    const { url, ca, timeoutMs, startTls } = this.options;
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    // A fresh object per use: startTLS adds the socket to the one it is given.
    const tls = () => ({ ca, servername: /^[\d.:]+$/.test(host) ? undefined : host, rejectUnauthorized: true });
    const clientOptions: ClientOptions = { url, timeout: timeoutMs, connectTimeout: timeoutMs, strictDN: false };
    // Only for ldaps://: ldapts given TLS options on ldap:// speaks TLS at once, and StartTLS then fails.
    if (url.startsWith('ldaps:')) clientOptions.tlsOptions = tls();
    const { Client: LdapClient } = await ldapts();
    const client = new LdapClient(clientOptions);
    // The whole session, not only each step, is bounded: a directory that trickles answers cannot hold a sign-in.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([
        (async () => {
          if (startTls) await client.startTLS(tls());
          try {
            await client.bind(this.options.bindDn, this.options.bindPassword());
          } catch (err) {
            if (err instanceof lib().InvalidCredentialsError) throw new DirectoryUnavailableError('the service account\'s bind was refused (BERTH_LDAP_BIND_DN and its password)');
            throw err;
          }
          return work(client);
        })(),
        deadline,
      ]);
    } catch (err) {
      if (err instanceof DirectoryUnavailableError) throw err;
      throw new DirectoryUnavailableError((err as Error).message || String(err));
    } finally {
      clearTimeout(timer);
      this.open--;
      client.unbind().catch(() => undefined);
    }
  }

  private async findUser(client: Client, username: string): Promise<Entry[]> {
    const { baseDn, userFilter, usernameAttribute, displayNameAttribute, emailAttribute } = this.options;
    const filter = userFilter.replaceAll('{username}', lib().Filter.escape(username));
    const { searchEntries } = await client.search(baseDn, {
      scope: 'sub',
      filter,
      sizeLimit: 2,
      attributes: [usernameAttribute, displayNameAttribute, emailAttribute],
    }).catch((err: unknown) => {
      // Two or more matches: the server stops at the size limit; the name does not say who.
      if (err instanceof lib().SizeLimitExceededError) return { searchEntries: [{ dn: '' }, { dn: '' }] as Entry[] };
      throw err;
    });
    return searchEntries;
  }

  private async describe(client: Client, found: Entry): Promise<DirectoryEntry> {
    const { groupBaseDn, groupFilter, usernameAttribute, displayNameAttribute, emailAttribute } = this.options;
    const { searchEntries } = await client.search(groupBaseDn, {
      scope: 'sub',
      filter: groupFilter.replaceAll('{dn}', lib().Filter.escape(found.dn)),
      sizeLimit: MAX_GROUPS,
      attributes: ['1.1'],
    });
    return {
      dn: found.dn,
      username: (first(found[usernameAttribute]) ?? '').toLowerCase(),
      displayName: first(found[displayNameAttribute])?.slice(0, 256),
      email: first(found[emailAttribute])?.slice(0, 256),
      groups: searchEntries.map((group) => normalizeDn(group.dn)),
    };
  }
}
