// The auth room's face: who the caller is (credentials, refresh tokens, bearer tokens) and what they
// may do (the policy, fed with facts from storage), with every decision written to the audit log.
import type { RepositoryStore, StorageDriver, Lock } from '../storage/index.ts';
import { isValidName, mapLimit } from '../storage/index.ts';
import { AccountStore, type Authenticated } from './accounts.ts';
import type { AuditLog } from './audit.ts';
import { loadSigningKey, type SigningKey } from './keys.ts';
import { ACTIONS, allowedActions, defaultVisibility, mayListCatalog, namespaceOf, type Action, type Mode, type Principal, type Role, type ScopeGrant, type Visibility } from './policy.ts';
import { mergeScopes, TokenService, type AccessEntry, type RequestedScope } from './tokens.ts';

/** Repositories whose settings the catalog filter reads at once. */
const PULLABLE_CONCURRENCY = 16;

/** What the auth room needs to know of the repositories that exist. */
export interface RepositoryCatalog {
  exists(name: string): Promise<boolean>;
}

export interface AuthOptions {
  mode: Mode;
  issuer: string;
  service: string;
  tokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
}

export const ANONYMOUS: Authenticated = { principal: { kind: 'anonymous' }, credential: { kind: 'none' } };

export function principalName(who: Principal): string {
  return who.kind === 'anonymous' ? 'anonymous' : who.name;
}

export class AuthService {
  readonly accounts: AccountStore;

  private constructor(
    private readonly catalog: RepositoryCatalog,
    readonly options: AuthOptions,
    readonly key: SigningKey,
    readonly tokens: TokenService,
    private readonly repositories: RepositoryStore,
    readonly audit: AuditLog,
    driver: StorageDriver,
    lock: Lock,
  ) {
    this.accounts = new AccountStore(driver, lock);
  }

  static async create(
    options: AuthOptions,
    storage: { driver: StorageDriver; repositories: RepositoryStore; manifests: RepositoryCatalog },
    lock: Lock,
    audit: AuditLog,
  ): Promise<AuthService> {
    const key = await loadSigningKey(storage.driver, lock);
    const tokens = new TokenService(key, { issuer: options.issuer, service: options.service, ttlSeconds: options.tokenTtlSeconds });
    return new AuthService(storage.manifests, options, key, tokens, storage.repositories, audit, storage.driver, lock);
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
    await this.repositories.update(name, { visibility });
  }

  /** What `who` may do to repository `name`, from its visibility and the caller's place in its namespace. */
  allowed(who: Principal, name: string, limit?: readonly ScopeGrant[]): Promise<Set<Action>> {
    return this.actions(who, name, limit, (namespace) => this.accounts.roleIn(namespace, who));
  }

  /**
   * Which of `names` `who` may pull, in their order: the catalog's filter. Each namespace's role is looked
   * up once, and the repositories' settings are read a few at a time.
   */
  async pullable(who: Principal, names: readonly string[], limit?: readonly ScopeGrant[]): Promise<string[]> {
    const roles = new Map<string, Promise<Role | undefined>>();
    const roleIn = (namespace: string) => {
      if (!roles.has(namespace)) roles.set(namespace, this.accounts.roleIn(namespace, who));
      return roles.get(namespace)!;
    };
    const allowed = await mapLimit(names, PULLABLE_CONCURRENCY, async (name) => (await this.actions(who, name, limit, roleIn)).has('pull'));
    return names.filter((_, i) => allowed[i]);
  }

  private async actions(
    who: Principal,
    name: string,
    limit: readonly ScopeGrant[] | undefined,
    roleIn: (namespace: string) => Promise<Role | undefined>,
  ): Promise<Set<Action>> {
    if (!isValidName(name)) return new Set();
    if (who.kind === 'user' && who.admin && !limit) return new Set(ACTIONS);
    const [visibility, orgRole] = await Promise.all([this.visibility(name), roleIn(namespaceOf(name))]);
    return allowedActions(who, name, { mode: this.mode, visibility, orgRole }, limit);
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
      const allowed = await this.allowed(who.principal, scope.name, who.limit);
      const asked = scope.actions.includes('*') ? ['pull', 'push', 'delete'] : scope.actions;
      const granted = asked.filter((a): a is Action => allowed.has(a as Action));
      this.audit.record({ who: whoName, action: asked.join(','), repository: scope.name, allowed: granted.length === asked.length, granted, address });
      if (granted.length === 0) continue;
      if (granted.includes('push')) await this.repositories.update(scope.name, { visibility: defaultVisibility(this.mode) }, true);
      access.push({ type: 'repository', name: scope.name, actions: granted });
    }
    return access;
  }
}
