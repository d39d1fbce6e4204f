// The accounts of the users a directory knows: their password is the directory's to check; their local
// record (made at the first sign-in) carries what the directory said and holds their tokens; their roles
// in the organisations the group mapping names are the directory's. Read again at each sign-in and, for
// tokens and sessions in use, once the last check is older than the refresh interval: a user the
// directory no longer finds (removed, or disabled: the filter leaves them out) is removed here with
// everything that granted through the name. A directory that does not answer decides nothing
// (DirectoryUnavailableError): nobody is let in, and nobody is removed, on its silence.
import { AccountError, isAccountName, type AccountStore, type Authenticated, type User } from './accounts.ts';
import type { AuditLog } from './audit.ts';
import type { Directory, DirectoryEntry } from './directory.ts';

export class DirectoryAccounts {
  // One check per user at a time in this process: a burst of requests with one token asks the directory once.
  private readonly checking = new Map<string, Promise<boolean>>();

  constructor(
    private readonly directory: Directory,
    private readonly accounts: AccountStore,
    private readonly audit: AuditLog,
  ) {}

  /** Whether the directory checks this name's password: no local user holds it. */
  async checks(username: string): Promise<boolean> {
    const user = await this.accounts.user(username.toLowerCase());
    return !user || user.directory !== undefined;
  }

  /** Who the password proves the caller to be, by the directory; undefined when it does not. */
  async signIn(username: string, password: string, address?: string): Promise<Authenticated | undefined> {
    const check = await this.directory.verify(username, password);
    if (!check.ok) {
      this.audit.record({ who: username.slice(0, 200), action: 'directory sign-in', allowed: false, reason: check.reason, address });
      if (check.reason === 'no such user') await this.forget(username.toLowerCase(), address);
      return undefined;
    }
    const user = await this.record(check.entry, address);
    return user && { principal: { kind: 'user', name: user.name, admin: user.admin }, credential: { kind: 'password', epoch: user.epoch } };
  }

  /** `who` if they still stand: a directory user is read again from the directory once their last check is old. */
  async confirm(who: Authenticated, address?: string): Promise<Authenticated | undefined> {
    if (who.principal.kind !== 'user') return who;
    const name = who.principal.name;
    const user = await this.accounts.user(name);
    if (!user?.directory || Date.now() - Date.parse(user.directory.checkedAt) < this.directory.refreshMs) return who;
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
      this.audit.record({ who: entry.username.slice(0, 200) || entry.dn.slice(0, 200), action: 'directory sign-in', allowed: false, reason, address });
      return undefined;
    };
    if (!isAccountName(entry.username)) return refuse('the directory\'s user name is not a valid Berth name');
    const facts = { dn: entry.dn, checkedAt: new Date().toISOString(), displayName: entry.displayName, email: entry.email };
    const user = await this.accounts.directoryUser(entry.username, facts);
    if (!user) return refuse('the name is a local account\'s, or too like another account\'s');
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
        this.audit.record({ who: entry.username, action: 'directory role', allowed: role !== undefined, reason: `${organisation}:${role ?? 'none'}`, address });
      } catch (err) {
        if (!(err instanceof AccountError)) throw err;
        this.audit.record({ who: entry.username, action: 'directory role', allowed: false, reason: `${organisation}: ${err.message}`, address });
      }
    }
  }

  /** The directory no longer has the user: their record, tokens, robots and roles go. */
  private async forget(name: string, address?: string): Promise<void> {
    const user = await this.accounts.user(name);
    if (!user?.directory) return;
    try {
      await this.accounts.removeUser(name);
    } catch (err) {
      if (!(err instanceof AccountError)) throw err;
      return;
    }
    this.audit.record({ who: name, action: 'directory removal', allowed: false, reason: 'the directory no longer has the user', address });
  }
}
