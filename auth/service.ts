// The auth room's face: who the caller is (credentials, refresh tokens, bearer tokens) and what they
// may do (the policy, fed with facts from storage), with every decision written to the audit log.
import type { RepositoryStore, StorageDriver, Lock, RateCounter, RateCount } from '../storage/index.ts';
import { isValidName, mapLimit } from '../storage/index.ts';
import { AccountError, AccountStore, canonicalName, PAT_PREFIX, SIGN_UPS_PER_ADDRESS_PER_HOUR, signUpCounterKey, type Authenticated, type User } from './accounts.ts';
import type { AuditLog } from './audit.ts';
import { DirectoryAccounts } from './directory-accounts.ts';
import type { Directory } from './directory.ts';
import { OidcSignIn, type OidcOptions, type Sealer } from './oidc.ts';
import { loadSigningKey, type SigningKey } from './keys.ts';
import { ACTIONS, allowedActions, defaultVisibility, mayListCatalog, namespaceOf, type Action, type Mode, type Principal, type Role, type ScopeGrant, type Visibility } from './policy.ts';
import { mergeScopes, TokenService, type AccessEntry, type RequestedScope } from './tokens.ts';

/** Organisations whose membership a filter reads at once. */
const ROLE_CONCURRENCY = 16;

export interface PullableOptions {
  /** Where in `names` to begin (the catalog's `last`, found by binary search). */
  start?: number;
  /** How many names to find at most (the catalog's page, and one more). */
  count?: number;
  /** Names the caller may pull whatever the policy says (the repositories its token grants pull on). */
  granted?: (name: string) => boolean;
}

/** What the auth room needs to know of the repositories that exist. */
export interface RepositoryCatalog {
  exists(name: string): Promise<boolean>;
  /** Every repository's name, sorted (the same array while nothing changed). */
  catalog(): Promise<string[]>;
}

export interface AuthOptions {
  mode: Mode;
  issuer: string;
  service: string;
  tokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** Names no one may sign up for or be given (`library` always). */
  reservedNames: readonly string[];
  /**
   * The namespaces that mirrors' repositories are in (each prefix's first component): an organisation an
   * admin makes under that name grants pull through the mirror to its members; nobody signs up for one.
   */
  mirrorNamespaces?: readonly string[];
  /**
   * The repository a read of `name` is served from when that is another name: docker's registry-mirrors
   * ask for `library/alpine`, which the docker mirror serves as `<prefix>/library/alpine` (unless a local
   * repository has the name). Undefined: served as itself.
   */
  servedAs?: (name: string) => Promise<string | undefined>;
}

/**
 * How a sign-up ended. Refused: sign-up is closed (not public-index mode); too many attempts from the
 * address this hour (`window` says when it ends); the name is taken (or too like one taken); the name or
 * password is not valid, or the name is reserved (`reason` tells the person why).
 */
export type SignUpResult =
  | { ok: true; user: User }
  | { ok: false; refused: 'closed' }
  | { ok: false; refused: 'too-many'; window: RateCount }
  | { ok: false; refused: 'taken' | 'invalid'; reason: string };

/** Where a sign-up came from: the address it is counted and audited under, and the door (the API or the web form). */
export interface SignUpOrigin {
  address: string;
  via: 'api' | 'web';
}

/** Where users who have no local password come from, besides local accounts. */
export interface IdentitySources {
  /** A directory that checks passwords (BERTH_LDAP_URL). */
  directory?: Directory;
  /** An OpenID provider the browser signs in through (BERTH_OIDC_ISSUER); `sealer` seals its refresh tokens and the sign-in cookie. */
  oidc?: { options: OidcOptions; sealer: Sealer };
}

export const ANONYMOUS: Authenticated = { principal: { kind: 'anonymous' }, credential: { kind: 'none' } };

export function principalName(who: Principal): string {
  return who.kind === 'anonymous' ? 'anonymous' : who.name;
}

export class AuthService {
  readonly accounts: AccountStore;
  /** The users a directory checks the passwords of (BERTH_LDAP_URL), if one is configured. */
  private readonly directory?: DirectoryAccounts<Directory>;
  /** Sign-in through an OpenID provider (BERTH_OIDC_ISSUER), if one is configured. */
  readonly oidc?: OidcSignIn;
  // The canonical namespaces of the catalog's names, made again only when the catalog changes.
  private namespaces?: { names: readonly string[]; canonical: Set<string> };

  private constructor(
    private readonly catalog: RepositoryCatalog,
    readonly options: AuthOptions,
    readonly key: SigningKey,
    readonly tokens: TokenService,
    private readonly repositories: RepositoryStore,
    readonly audit: AuditLog,
    driver: StorageDriver,
    lock: Lock,
    private readonly counter: RateCounter,
    sources: IdentitySources,
  ) {
    this.accounts = new AccountStore(driver, lock, { reserved: options.reservedNames, namespaceExists: (canonical) => this.namespaceExists(canonical) });
    if (sources.directory) this.directory = new DirectoryAccounts(sources.directory, this.accounts, audit);
    if (sources.oidc) this.oidc = new OidcSignIn(sources.oidc.options, this.accounts, lock, sources.oidc.sealer, audit);
  }

  /**
   * Whether repositories exist under a namespace that looks like `canonical`. Asked by sign-up only (a few
   * an hour per address): the set is made from the catalog's names once per change of the catalog.
   */
  private async namespaceExists(canonical: string): Promise<boolean> {
    if (this.options.mirrorNamespaces?.some((namespace) => canonicalName(namespace) === canonical)) return true;
    const names = await this.catalog.catalog();
    if (this.namespaces?.names !== names) {
      const nested = names.filter((name) => name.includes('/'));
      this.namespaces = { names, canonical: new Set(nested.map((name) => canonicalName(namespaceOf(name)))) };
    }
    return this.namespaces.canonical.has(canonical);
  }

  static async create(
    options: AuthOptions,
    storage: { driver: StorageDriver; repositories: RepositoryStore; manifests: RepositoryCatalog },
    coordination: { lock: Lock; counter: RateCounter },
    audit: AuditLog,
    sources: IdentitySources = {},
  ): Promise<AuthService> {
    const { lock, counter } = coordination;
    const key = await loadSigningKey(storage.driver, lock);
    const tokens = new TokenService(key, { issuer: options.issuer, service: options.service, ttlSeconds: options.tokenTtlSeconds });
    return new AuthService(storage.manifests, options, key, tokens, storage.repositories, audit, storage.driver, lock, counter, sources);
  }

  /** Whether anyone may sign themselves up: in public-index mode only. */
  get signUpOpen(): boolean {
    return this.mode === 'public-index';
  }

  /**
   * Sign-up, the one rule for the API and the web form: open in public-index mode only; at most
   * SIGN_UPS_PER_ADDRESS_PER_HOUR attempts from one address (both doors count together, across every
   * process; when the count cannot be had, the attempt goes through rather than being refused for a
   * fault of ours); a name that is nobody's, was nobody's and looks like nobody's (AccountStore.signUp);
   * every attempt the account store decides is audited.
   */
  async signUp(username: string, password: string, origin: SignUpOrigin): Promise<SignUpResult> {
    if (!this.signUpOpen) return { ok: false, refused: 'closed' };
    const window = await this.counter.hit(signUpCounterKey(origin.address), 3600_000);
    if (window && window.count > SIGN_UPS_PER_ADDRESS_PER_HOUR) return { ok: false, refused: 'too-many', window };
    const action = origin.via === 'web' ? 'web-signup' : 'sign-up';
    try {
      const user = await this.accounts.signUp(username, password);
      this.audit.record({ who: username, action, allowed: true, address: origin.address });
      return { ok: true, user };
    } catch (err) {
      if (!(err instanceof AccountError)) throw err;
      this.audit.record({ who: username.slice(0, 200), action, allowed: false, reason: err.message, address: origin.address });
      return { ok: false, refused: err.refusal === 'taken' ? 'taken' : 'invalid', reason: err.message };
    }
  }

  // ---- credentials: local accounts from storage, the directory's users from the directory ----------
  // Each may throw DirectoryUnavailableError when the directory must be asked and does not answer.

  /** Who a user name and password, access token or robot secret prove the caller to be. */
  async authenticate(username: string, password: string, address?: string): Promise<Authenticated | undefined> {
    const directory = this.directory;
    const isPassword = !username.includes('+') && !password.startsWith(PAT_PREFIX);
    if (directory && isPassword && (await directory.checks(username))) return directory.signIn(username, password, address);
    const who = await this.accounts.authenticate(username, password);
    return who && this.confirmed(who, address);
  }

  /** Who `subject` is now, if the credential they proved themselves with still stands (accounts.current, then the directory). */
  async current(subject: string, credential: Authenticated['credential'], address?: string): Promise<Authenticated | undefined> {
    const who = await this.accounts.current(subject, credential);
    return who && this.confirmed(who, address);
  }

  /** Who a refresh token stands for, if it and its credential still stand (accounts.refresh, then the directory). */
  async refresh(presented: string, address?: string): Promise<Authenticated | undefined> {
    const who = await this.accounts.refresh(presented);
    return who && this.confirmed(who, address);
  }

  /** `who` if the source of their account (a directory, a provider: each confirms only its own users) still has them. */
  private async confirmed(who: Authenticated, address?: string): Promise<Authenticated | undefined> {
    const confirmed = this.directory ? await this.directory.confirm(who, address) : who;
    return confirmed && this.oidc ? this.oidc.accounts.confirm(confirmed, address) : confirmed;
  }

  /**
   * A repository's visibility: as set; else, for one that exists, the mode's default (repositories
   * pushed before auth was on); else private, so that a missing repository grants exactly what a private
   * one grants and nothing tells them apart.
   */
  private async visibility(name: string): Promise<Visibility> {
    const settings = await this.repositories.settings(name);
    if (settings?.visibility) return settings.visibility;
    return (await this.catalog.exists(name)) ? defaultVisibility(this.mode) : 'private';
  }

  get mode(): Mode {
    return this.options.mode;
  }

  async setVisibility(name: string, visibility: 'public' | 'private'): Promise<void> {
    if (!isValidName(name)) throw new AccountError('invalid', `${JSON.stringify(name.slice(0, 300))} is not a valid repository name`);
    if (visibility !== 'public' && visibility !== 'private') throw new AccountError('invalid', 'visibility is public or private');
    await this.repositories.update(name, { visibility });
  }

  /**
   * What `who` may do to repository `name`, from its visibility (its settings, read now) and the caller's
   * place in its namespace.
   */
  async allowed(who: Principal, name: string, limit?: readonly ScopeGrant[]): Promise<Set<Action>> {
    if (!isValidName(name)) return new Set();
    if (who.kind === 'user' && who.admin && !limit) return new Set(ACTIONS);
    const [visibility, orgRole] = await Promise.all([this.visibility(name), this.accounts.roleIn(namespaceOf(name), who)]);
    return allowedActions(who, name, { mode: this.mode, visibility, orgRole }, limit);
  }

  /**
   * Whether `who` may change a repository's settings (visibility, description, README, logo): a registry
   * admin, even before its first push (as `berth repo visibility`); anyone else only for a repository that
   * exists and that they may delete. The rule of the admin API and the settings page alike.
   */
  async managesRepository(who: Principal, name: string, limit?: readonly ScopeGrant[]): Promise<boolean> {
    if (!isValidName(name)) return false;
    if (who.kind === 'user' && who.admin && !limit) return true;
    return (await this.catalog.exists(name)) && (await this.allowed(who, name, limit)).has('delete');
  }

  /**
   * Which of `names` `who` may pull, in their order: the filter of the catalog and the search. The
   * visibilities come from the index RepositoryStore keeps in memory, so a repository the caller cannot see
   * costs a look in memory, never a storage read; a role is looked up only for a private repository in an
   * organisation the caller is not known to own, once per organisation (one listing says which namespaces
   * are organisations). With `count`, the scan stops when that many are found.
   */
  async pullableNames(who: Principal, names: readonly string[], limit?: readonly ScopeGrant[], options: PullableOptions = {}): Promise<string[]> {
    const { start = 0, count = Infinity, granted } = options;
    const found: string[] = [];
    if (count <= 0) return found;
    const index = await this.repositories.visibilities();
    const roleIn = this.roleLookup(who);
    const facts = (name: string) => {
      const visibility = index.of(name) ?? defaultVisibility(this.mode);
      const namespace = namespaceOf(name);
      // A role adds pull only to a private repository of someone else's namespace, and only for a user.
      const needsRole = visibility === 'private' && who.kind === 'user' && !who.admin && who.name !== namespace;
      return { visibility, namespace, needsRole };
    };
    if (count === Infinity) {
      // Everything is wanted (a search): the roles it needs are looked up together, a few at a time.
      const namespaces = new Set(names.slice(start).filter(isValidName).map(facts).filter((f) => f.needsRole).map((f) => f.namespace));
      await mapLimit([...namespaces], ROLE_CONCURRENCY, roleIn);
    }
    for (let i = start; i < names.length && found.length < count; i++) {
      const name = names[i]!;
      if (granted?.(name)) {
        found.push(name);
        continue;
      }
      if (!isValidName(name)) continue;
      const { visibility, namespace, needsRole } = facts(name);
      const orgRole = needsRole ? await roleIn(namespace) : undefined;
      if (allowedActions(who, name, { mode: this.mode, visibility, orgRole }, limit).has('pull')) found.push(name);
    }
    return found;
  }

  /** `who`'s role per namespace, from their own organisations, read once: not from every organisation. */
  private roleLookup(who: Principal): (namespace: string) => Promise<Role | undefined> {
    if (who.kind !== 'user') return async () => undefined;
    let roles: Promise<Map<string, Role>> | undefined;
    return async (namespace) => {
      roles ??= this.accounts.organisationsOf(who.name).then((orgs) => new Map(orgs.map((org) => [org.name, org.members[who.name]!])));
      return (await roles).get(namespace);
    };
  }

  /**
   * The access a token carries: for each requested resource, only what was asked AND what the caller may
   * do. A repository that may be pushed to for the first time gets the mode's default visibility now,
   * before any byte of it is stored.
   */
  async grant(who: Authenticated, requested: RequestedScope[], address?: string): Promise<AccessEntry[]> {
    const access: AccessEntry[] = [];
    const whoName = principalName(who.principal);
    for (const scope of mergeScopes(requested)) {
      if (scope.type === 'registry' && scope.name === 'catalog') {
        const ok = scope.actions.includes('*') && mayListCatalog(who.principal, this.mode);
        this.audit.record({ who: whoName, action: 'catalog', allowed: ok, address });
        if (ok) access.push({ type: 'registry', name: 'catalog', actions: ['*'] });
        continue;
      }
      if (scope.type !== 'repository' || !isValidName(scope.name)) {
        this.audit.record({ who: whoName, action: 'token', repository: scope.name.slice(0, 300), allowed: false, reason: 'unknown resource', address });
        continue;
      }
      const asked = scope.actions.includes('*') ? ['pull', 'push', 'delete'] : scope.actions;
      // A pull alone of a name a mirror serves under another: the token grants (and the gate checks) that
      // other name, so it never covers a local repository of the asked name created since. A push is
      // always local, and its pull with it.
      const pullOnly = asked.length === 1 && asked[0] === 'pull';
      const name = (pullOnly && (await this.options.servedAs?.(scope.name))) || scope.name;
      const allowed = await this.allowed(who.principal, name, who.limit);
      const granted = asked.filter((a): a is Action => allowed.has(a as Action));
      this.audit.record({ who: whoName, action: asked.join(','), repository: name, allowed: granted.length === asked.length, granted, address });
      if (granted.length === 0) continue;
      if (granted.includes('push')) await this.repositories.update(name, { visibility: defaultVisibility(this.mode) }, true);
      access.push({ type: 'repository', name, actions: granted });
    }
    return access;
  }
}
