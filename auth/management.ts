// Who may manage what, and the management itself: organisation members, personal access tokens, robots
// and lifecycle policies. The one service the admin API and the account pages call (the berth command
// acts as the registry's operator through it too): each rule — who may ask, what a request defaults to,
// what is refused — is written here once, and every decision, allowed or refused, goes to the audit log.
import type { PolicyStore, Policy, Quotas } from '../storage/index.ts';
// A policy's scope is a namespace or a repository; its namespace is the first segment (`acme` is acme's own).
import { isValidName, namespaceOf as namespaceOfScope } from '../storage/index.ts';
import {
  AccountError,
  isAccountName,
  parseExpiry,
  parseScopeGrants,
  robotDefaultScope,
  TOKEN_DEFAULT_SCOPE,
  withoutSecret,
  type AccountStore,
  type Organisation,
  type PersonalAccessToken,
  type Robot,
  type User,
} from './accounts.ts';
import type { AuditLog } from './audit.ts';
import type { Principal, Role } from './policy.ts';

/**
 * Who asks: a principal (through the admin API or a page), or the registry's operator — the berth command
 * on the storage, or anyone in open mode, where there are no accounts — who may do everything.
 */
export type Actor =
  | { kind: 'operator'; name: string; via: string }
  | { kind: 'principal'; principal: Principal; via: string; address?: string };

/** A token or robot as listed: never what checks its secret. */
export type Listed<T extends { secretHash: string }> = Omit<T, 'secretHash'>;

/** What a token or robot is made with, as a person gives it (text): the defaults are the service's. */
export interface CredentialRequest {
  scopes?: readonly string[];
  /** A lifetime like 30d, or never; 90 days unless given. */
  expiresIn?: string;
}

/** A scope's own policy and, when its namespace has a quota, the bytes the namespace holds now. */
export interface PolicyView {
  scope: string;
  policy: Policy;
  usageBytes?: number;
}

export const DEFAULT_CREDENTIAL_LIFETIME = '90d';

/**
 * The records of the first `n` of `names` (up to n + 1, as a store's page gives them), read by `read`, and
 * the name to ask the next page after when there is more.
 */
async function pageOfRecords<T>(names: string[], n: number, read: (name: string) => Promise<T | undefined>): Promise<{ records: T[]; next?: string }> {
  const shown = names.slice(0, n);
  const records = (await Promise.all(shown.map(read))).filter((r): r is Awaited<T> => r !== undefined) as T[];
  return { records, ...(names.length > n ? { next: shown[shown.length - 1] } : {}) };
}

/** Live (not revoked) tokens of a user, robots of a namespace: what a list page shows stays bounded. */
export const MAX_LIVE_CREDENTIALS = 100;
const live = (records: Array<{ revokedAt?: string }>) => records.filter((r) => r.revokedAt === undefined).length;

const actorName = (actor: Actor) => (actor.kind === 'operator' ? actor.name : actor.principal.kind === 'anonymous' ? 'anonymous' : actor.principal.name);

export function isRegistryAdmin(actor: Actor): boolean {
  return actor.kind === 'operator' || (actor.principal.kind === 'user' && actor.principal.admin === true);
}

export class AccountManagement {
  constructor(
    /** Undefined in open mode: no accounts to manage, only policies. */
    private readonly accounts: AccountStore | undefined,
    private readonly audit: AuditLog | undefined,
    private readonly policies: PolicyStore,
    private readonly quotas: Quotas,
  ) {}

  private record(actor: Actor, action: string, allowed: boolean, fields: { repository?: string; granted?: string[]; reason?: string } = {}): void {
    const reason = [actor.via, fields.reason].filter(Boolean).join('; ');
    this.audit?.record({ who: actorName(actor).slice(0, 200), action: action.slice(0, 300), allowed, ...fields, reason, address: actor.kind === 'principal' ? actor.address : undefined });
  }

  /** Refuses (audited) with an AccountError: `unknown` hides what the actor does not manage, `denied` says no. */
  private refuse(actor: Actor, action: string, refusal: 'unknown' | 'denied', message: string): never {
    this.record(actor, action, false, { reason: message });
    throw new AccountError(refusal, message);
  }

  private store(): AccountStore {
    if (!this.accounts) throw new AccountError('unknown', 'this registry runs in open mode: it has no accounts');
    return this.accounts;
  }

  /**
   * Whether the actor manages the namespace (undefined: what is the registry's alone): a registry admin,
   * the user of that name, an organisation's admins.
   */
  async managesNamespace(actor: Actor, namespace: string | undefined): Promise<boolean> {
    if (actor.kind === 'operator' || isRegistryAdmin(actor)) return true;
    const p = actor.principal;
    if (namespace === undefined || p.kind !== 'user' || !isAccountName(namespace)) return false;
    if (p.name === namespace) return true;
    return (await this.accounts?.roleIn(namespace, p)) === 'admin';
  }

  /** A namespace's things are told only to who manages it: to anyone else it does not exist. */
  private async requireManager(actor: Actor, namespace: string, action: string): Promise<void> {
    if (!(await this.managesNamespace(actor, namespace))) this.refuse(actor, action, 'unknown', `no namespace ${namespace.slice(0, 80)} that you manage`);
  }

  private requireSelfOrAdmin(actor: Actor, user: string, action: string): void {
    const self = actor.kind === 'principal' && actor.principal.kind === 'user' && actor.principal.name === user;
    if (!self && !isRegistryAdmin(actor)) this.refuse(actor, action, 'denied', 'only the user or an admin may manage these tokens');
  }

  // ---- users and organisations (registry admins) ------------------------------------------------

  private requireAdmin(actor: Actor, action: string): void {
    if (!isRegistryAdmin(actor)) this.refuse(actor, action, 'denied', 'only an admin may do this');
  }

  /** Runs an admin's change of accounts, audited whether the store takes it or refuses it. */
  private async adminChange<T>(actor: Actor, action: string, change: (accounts: AccountStore) => Promise<T>, granted?: (result: T) => { granted?: string[]; reason?: string }): Promise<T> {
    this.requireAdmin(actor, action);
    try {
      const result = await change(this.store());
      this.record(actor, action, true, granted?.(result));
      return result;
    } catch (err) {
      if (err instanceof AccountError) this.record(actor, action, false, { reason: err.message });
      throw err;
    }
  }

  /** A page of at most `n` users after the name `last`, and the name to ask the next page after, if any. */
  async users(actor: Actor, n: number, last?: string): Promise<{ users: User[]; next?: string }> {
    this.requireAdmin(actor, 'user list');
    if (last !== undefined && !isAccountName(last)) throw new AccountError('invalid', 'last is a user name');
    const accounts = this.store();
    const { records: users, next } = await pageOfRecords(await accounts.usersPage(n + 1, last), n, (name) => accounts.user(name));
    return { users, ...(next !== undefined ? { next } : {}) };
  }

  addUser(actor: Actor, name: string, password: string, admin: boolean): Promise<User> {
    return this.adminChange(actor, `user add ${name.slice(0, 80)}`, (a) => a.addUser(name, password, admin), () => ({ granted: admin ? ['admin'] : [] }));
  }

  /** Removes a user with their roles, robots and tokens; the name stays retired. */
  removeUser(actor: Actor, name: string): Promise<{ roles: string[]; robots: string[]; tokens: number }> {
    return this.adminChange(actor, `user rm ${name.slice(0, 80)}`, (a) => a.removeUser(name), (removed) => ({
      reason: `removed roles in: ${removed.roles.join(' ') || 'none'}; robots: ${removed.robots.join(' ') || 'none'}; access tokens: ${removed.tokens}`,
    }));
  }

  addOrganisation(actor: Actor, name: string, owner?: string): Promise<Organisation> {
    return this.adminChange(actor, `org add ${name.slice(0, 80)}`, (a) => a.addOrganisation(name, owner), () => ({ granted: owner ? [`${owner}:admin`] : [] }));
  }

  // ---- organisations and members ----------------------------------------------------------------

  /**
   * A page of at most `n` of the organisations the actor manages (any of them for an admin), by name after
   * `last`, and the name to ask the next page after, if any: an admin's page reads its own organisations,
   * not every one.
   */
  async managedOrganisations(actor: Actor, n: number, last?: string): Promise<{ organisations: Organisation[]; next?: string }> {
    if (last !== undefined && !isAccountName(last)) throw new AccountError('invalid', 'last is an organisation name');
    const accounts = this.store();
    if (actor.kind === 'operator' || isRegistryAdmin(actor)) {
      const { records: organisations, next } = await pageOfRecords(await accounts.organisationsPage(n + 1, last), n, (name) => accounts.organisation(name));
      return { organisations, ...(next !== undefined ? { next } : {}) };
    }
    if (actor.principal.kind !== 'user') return { organisations: [] };
    // A user's own organisations only, from their memberships.
    const user = actor.principal.name;
    const managed = (await accounts.organisationsOf(user))
      .filter((org) => org.members[user] === 'admin' && (last === undefined || org.name > last))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    const organisations = managed.slice(0, n);
    return { organisations, ...(managed.length > n ? { next: organisations[organisations.length - 1]!.name } : {}) };
  }

  async organisation(actor: Actor, name: string): Promise<Organisation> {
    await this.requireManager(actor, name, `org show ${name}`);
    const org = await this.store().organisation(name);
    if (!org) throw new AccountError('unknown', `no organisation ${name.slice(0, 80)}`);
    return org;
  }

  /** Sets a member's role, or removes the member (role undefined). */
  async setMember(actor: Actor, organisation: string, user: string, role: Role | undefined): Promise<Organisation> {
    const action = `org member ${organisation} ${user}`;
    await this.requireManager(actor, organisation, action);
    try {
      const org = await this.store().setMember(organisation, user, role);
      this.record(actor, action, true, { granted: role ? [role] : [] });
      return org;
    } catch (err) {
      if (err instanceof AccountError) this.record(actor, action, false, { reason: err.message });
      throw err;
    }
  }

  // ---- personal access tokens (the user, or an admin) -------------------------------------------

  async tokens(actor: Actor, owner: string): Promise<Listed<PersonalAccessToken>[]> {
    this.requireSelfOrAdmin(actor, owner, `token list ${owner}`);
    return (await this.store().tokensOf(owner)).map(withoutSecret);
  }

  /** Makes a token; the secret returned is the only time anyone sees it. */
  async createToken(actor: Actor, owner: string, request: CredentialRequest & { description?: string }): Promise<{ token: Listed<PersonalAccessToken>; secret: string }> {
    const action = `token create for ${owner}`;
    this.requireSelfOrAdmin(actor, owner, action);
    try {
      const scopes = parseScopeGrants(request.scopes, TOKEN_DEFAULT_SCOPE);
      const expiresAt = parseExpiry(request.expiresIn || DEFAULT_CREDENTIAL_LIFETIME);
      if (live(await this.store().tokensOf(owner)) >= MAX_LIVE_CREDENTIALS) throw new AccountError('denied', `${owner.slice(0, 80)} has ${MAX_LIVE_CREDENTIALS} tokens: revoke one first`);
      const { token, secret } = await this.store().createToken(owner, request.description ?? '', scopes, expiresAt);
      this.record(actor, `token create ${token.id} for ${owner}`, true, { granted: scopes.map((s) => `${s.pattern}:${s.actions.join(',')}`) });
      return { token: withoutSecret(token), secret };
    } catch (err) {
      if (err instanceof AccountError) this.record(actor, action, false, { reason: err.message });
      throw err;
    }
  }

  async revokeToken(actor: Actor, owner: string, id: string): Promise<void> {
    const action = `token revoke ${id.slice(0, 80)}`;
    this.requireSelfOrAdmin(actor, owner, action);
    const accounts = this.store();
    if ((await accounts.token(id))?.owner !== owner) this.refuse(actor, action, 'unknown', `no token ${id.slice(0, 80)}${owner ? ` of ${owner.slice(0, 80)}` : ''}`);
    await accounts.revoke(id);
    this.record(actor, action, true);
  }

  // ---- robots (the namespace's managers) --------------------------------------------------------

  async robots(actor: Actor, namespace: string): Promise<Listed<Robot>[]> {
    await this.requireManager(actor, namespace, `robot list ${namespace}`);
    return (await this.store().robotsOf(namespace)).map(withoutSecret);
  }

  /** Makes a robot `namespace+name`; the secret returned is the only time anyone sees it. */
  async createRobot(actor: Actor, namespace: string, request: CredentialRequest & { name: string }): Promise<{ robot: Listed<Robot>; secret: string }> {
    const action = `robot create ${namespace}+${request.name}`;
    await this.requireManager(actor, namespace, action);
    try {
      const scopes = parseScopeGrants(request.scopes, robotDefaultScope(namespace));
      const expiresAt = parseExpiry(request.expiresIn || DEFAULT_CREDENTIAL_LIFETIME);
      if (live(await this.store().robotsOf(namespace)) >= MAX_LIVE_CREDENTIALS) throw new AccountError('denied', `${namespace.slice(0, 80)} has ${MAX_LIVE_CREDENTIALS} robots: delete one first`);
      const { robot, secret } = await this.store().createRobot(namespace, request.name, scopes, expiresAt);
      this.record(actor, action, true, { granted: scopes.map((s) => `${s.pattern}:${s.actions.join(',')}`) });
      return { robot: withoutSecret(robot), secret };
    } catch (err) {
      if (err instanceof AccountError) this.record(actor, action, false, { reason: err.message });
      throw err;
    }
  }

  async deleteRobot(actor: Actor, namespace: string, name: string): Promise<string> {
    const full = `${namespace}+${name}`;
    const action = `robot revoke ${full.slice(0, 160)}`;
    await this.requireManager(actor, namespace, action);
    const accounts = this.store();
    if (!(await accounts.robot(full))) this.refuse(actor, action, 'unknown', `no robot ${full.slice(0, 160)}`);
    await accounts.revoke(full);
    this.record(actor, action, true);
    return full;
  }

  // ---- lifecycle policies -----------------------------------------------------------------------
  // A namespace's managers set immutable tags and retention for it and its repositories; a quota is the
  // registry admins' (it is what the namespace may cost them), so a manager's change leaves it as it was.

  async listPolicies(actor: Actor): Promise<Array<{ scope: string; policy: Policy }>> {
    if (!isRegistryAdmin(actor)) this.refuse(actor, 'policy list', 'denied', 'only an admin may list every policy');
    return this.policies.list();
  }

  private async requirePolicyScope(actor: Actor, scope: string, action: string): Promise<void> {
    if (!isValidName(scope)) {
      this.record(actor, action, false, { reason: 'not a repository or namespace name' });
      throw new AccountError('invalid', `${JSON.stringify(scope.slice(0, 300))} is not a repository or namespace name`);
    }
    await this.requireManager(actor, namespaceOfScope(scope), action);
  }

  /** The scope's own policy (PolicyError `none` when it has none), with the namespace's usage under a quota. */
  async policy(actor: Actor, scope: string): Promise<PolicyView> {
    await this.requirePolicyScope(actor, scope, `policy show ${scope.slice(0, 300)}`);
    return this.quotas.policyView(scope);
  }

  /** The scope's own policy, or undefined; and the bytes its namespace holds now. */
  async policyAndUsage(actor: Actor, scope: string): Promise<{ policy?: Policy; usageBytes: number }> {
    await this.requirePolicyScope(actor, scope, `policy show ${scope.slice(0, 300)}`);
    const [policy, usage] = await Promise.all([this.policies.get(scope), this.quotas.usage(namespaceOfScope(scope))]);
    return { policy, usageBytes: usage.bytes };
  }

  async setPolicy(actor: Actor, scope: string, policy: unknown): Promise<Policy> {
    const action = 'policy set';
    await this.requirePolicyScope(actor, scope, action);
    const quotaOf = (p: unknown) => (p && typeof p === 'object' ? (p as { quotaBytes?: unknown }).quotaBytes : undefined);
    if (!isRegistryAdmin(actor) && quotaOf(policy) !== (await this.policies.get(scope))?.quotaBytes) {
      this.refuse(actor, action, 'denied', 'only an admin may set or change a quota');
    }
    const stored = await this.policies.set(scope, policy);
    this.record(actor, action, true, { repository: scope });
    return stored;
  }

  async removePolicy(actor: Actor, scope: string): Promise<void> {
    const action = 'policy rm';
    await this.requirePolicyScope(actor, scope, action);
    if (!isRegistryAdmin(actor) && (await this.policies.get(scope))?.quotaBytes !== undefined) {
      this.refuse(actor, action, 'denied', 'only an admin may remove a quota');
    }
    await this.policies.removeExisting(scope);
    this.record(actor, action, true, { repository: scope });
  }
}
