// The accounts of the users a directory knows: their password is the directory's to check; their local
// record (made at the first sign-in) carries what the directory said and holds their tokens; their roles
// in the organisations the group mapping names are the directory's. Read again at each sign-in and, for
// tokens and sessions in use, once the last check is older than the refresh interval: a user the
// directory no longer finds (removed, or disabled: the filter leaves them out) is removed here with
// everything that granted through the name. A directory that does not answer decides nothing
// (DirectoryUnavailableError): nobody is let in, and nobody is removed, on its silence.
// The same holds for the users of an OpenID provider (an IdentitySource of kind oidc): signed in through
// the browser, read again with the provider's refresh token; each source keeps to its own users.
import { AccountError, isAccountName, type AccountStore, type Authenticated, type DirectoryFacts, type User } from './accounts.ts';
import type { AuditLog } from './audit.ts';
import type { Directory, DirectoryEntry, IdentitySource } from './directory.ts';

export class DirectoryAccounts<Source extends IdentitySource = IdentitySource> {
  // One check per user at a time in this process: a burst of requests with one token asks the directory once.
  private readonly checking = new Map<string, Promise<boolean>>();
  /** The audit's word for this source: `directory` (LDAP) or `oidc`. */
  private readonly said: string;

  constructor(
    private readonly directory: Source,
    private readonly accounts: AccountStore,
    private readonly audit: AuditLog,
  ) {
    this.said = directory.kind === 'ldap' ? 'directory' : 'oidc';
  }

  /** Whether the user is this source's (a record of another source, or a local account, is not). */
  private owns(user: User): boolean {
    return user.directory !== undefined && (user.directory.source ?? 'ldap') === this.directory.kind;
  }

  /** Whether the directory checks this name's password: no local user (nor another source's) holds it. */
  async checks(username: string): Promise<boolean> {
    const user = await this.accounts.user(username.toLowerCase());
    return !user || this.owns(user);
  }

  /** Who the password proves the caller to be, by the directory; undefined when it does not. */
  async signIn(this: DirectoryAccounts<Directory>, username: string, password: string, address?: string): Promise<Authenticated | undefined> {
    const check = await this.directory.verify(username, password);
    if (!check.ok) {
      this.audit.record({ who: username.slice(0, 200), action: 'directory sign-in', allowed: false, reason: check.reason, address });
      if (check.reason === 'no such user') await this.forget(username.toLowerCase(), address);
      return undefined;
    }
    return this.admit(check.entry, address);
  }

  /** Who the source's entry is here (the record made or renewed, the roles applied); undefined when the name cannot be theirs. */
  async admit(entry: DirectoryEntry, address?: string): Promise<Authenticated | undefined> {
    const user = await this.record(entry, address);
    return user && { principal: { kind: 'user', name: user.name, admin: user.admin }, credential: { kind: 'password', epoch: user.epoch } };
  }

  /** `who` if they still stand: a directory user is read again from the directory once their last check is old. */
  async confirm(who: Authenticated, address?: string): Promise<Authenticated | undefined> {
    if (who.principal.kind !== 'user') return who;
    const name = who.principal.name;
    const user = await this.accounts.user(name);
    if (!user || !this.owns(user) || Date.now() - Date.parse(user.directory!.checkedAt) < this.directory.refreshMs) return who;
    let pending = this.checking.get(name);
    if (!pending) {
      pending = this.recheck(name, address).finally(() => this.checking.delete(name));
      this.checking.set(name, pending);
    }
    return (await pending) ? who : undefined;
  }

  private async recheck(name: string, address?: string): Promise<boolean> {
    const entry = await this.directory.lookup(name);
    if (entry?.username === name && (await this.record(entry, address))) return true;
    await this.forget(name, address);
    return false;
  }

  /** Saves what the directory said of the user and applies their roles; undefined when the name cannot be theirs. */
  private async record(entry: DirectoryEntry, address?: string): Promise<User | undefined> {
    const refuse = (reason: string) => {
      this.audit.record({ who: entry.username.slice(0, 200) || entry.dn.slice(0, 200), action: `${this.said} sign-in`, allowed: false, reason, address });
      return undefined;
    };
    if (!isAccountName(entry.username)) return refuse(`the ${this.said}'s user name is not a valid Berth name`);
    const user = await this.accounts.directoryUser(entry.username, factsOf(this.directory.kind, entry));
    if (!user) return refuse('the name is a local account\'s, another source\'s, or too like another account\'s');
    await this.applyRoles(entry, address);
    return user;
  }

  /** The user's role in each organisation the mapping names: the highest their groups give, or none. */
  private async applyRoles(entry: DirectoryEntry, address?: string): Promise<void> {
    for (const [organisation, role] of this.directory.roles(entry)) {
      try {
        const org = (await this.accounts.organisation(organisation)) ?? (role ? await this.accounts.addOrganisation(organisation) : undefined);
        if (!org || org.members[entry.username] === role) continue;
        await this.accounts.setMember(organisation, entry.username, role);
        this.audit.record({ who: entry.username, action: `${this.said} role`, allowed: role !== undefined, reason: `${organisation}:${role ?? 'none'}`, address });
      } catch (err) {
        if (!(err instanceof AccountError)) throw err;
        this.audit.record({ who: entry.username, action: `${this.said} role`, allowed: false, reason: `${organisation}: ${err.message}`, address });
      }
    }
  }

  /** The directory no longer has the user: their record, tokens, robots and roles go. */
  private async forget(name: string, address?: string): Promise<void> {
    const user = await this.accounts.user(name);
    if (!user || !this.owns(user)) return;
    try {
      await this.accounts.removeUser(name);
    } catch (err) {
      if (!(err instanceof AccountError)) throw err;
      return;
    }
    this.audit.record({ who: name, action: `${this.said} removal`, allowed: false, reason: `the ${this.said === 'oidc' ? 'provider' : 'directory'} no longer has the user`, address });
  }
}

/** What the local record keeps of a source's entry (stamped now). */
export function factsOf(kind: IdentitySource['kind'], entry: DirectoryEntry): DirectoryFacts {
  const facts: DirectoryFacts = { dn: entry.dn, checkedAt: new Date().toISOString(), displayName: entry.displayName, email: entry.email };
  return kind === 'ldap' ? facts : { source: kind, ...facts, groups: entry.groups, sealedRefreshToken: entry.sealedRefreshToken };
}
