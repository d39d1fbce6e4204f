// Credentials checked with failed attempts counted across every process (Redis, or the cluster's
// primary): per account and address, and per address; once one passes its limit, even the right secret
// waits for the window to end there. A stranger's failures never lock the owner out of their account:
// a robot's or an access token's 256-bit secret cannot be guessed, so those are counted only where the
// failures came from. Passwords can be, so their failures are counted per account as well, as slowly as
// ever for a guesser at many addresses; the account's limit spares the addresses it signed in from lately.
// Used by the token endpoint, the web sign-in and Basic credentials sent straight to /v2.
import type { Context } from 'koa';
import { DirectoryUnavailableError, PAT_PREFIX, type Authenticated, type AuthService } from '../auth/index.ts';
import { retryAfterSeconds, type RateCounter } from '../storage/index.ts';
import type { Config } from './config.ts';
import { RegistryError } from './errors.ts';

export interface Counted {
  key: string;
  limit: number;
}

export function basicCredentials(ctx: Context): { username: string; password: string } | undefined {
  const header = ctx.get('Authorization');
  if (!/^Basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** How long a successful password login spares its address from the account's own limit. */
const KNOWN_ADDRESS_MS = 30 * 24 * 3600 * 1000;

/** A password, as opposed to a generated secret (a robot's, an access token's), which nobody can guess. */
const isPassword = (username: string, password: string) => !username.includes('+') && !password.startsWith(PAT_PREFIX);

const accountKey = (username: string) => username.toLowerCase().slice(0, 200);

/** The answer while the directory that checks a password does not answer (its reason goes to the audit log only). */
export const directoryUnavailable = () =>
  new RegistryError('UNAVAILABLE', 'the directory that checks passwords does not answer; try again shortly', null, { headers: { 'Retry-After': '10' } });

export class LoginGuard {
  private readonly windowMs: number;

  constructor(
    private readonly auth: AuthService,
    private readonly config: Config,
    private readonly counter: RateCounter,
  ) {
    this.windowMs = config.loginFailureWindowSeconds * 1000;
  }

  private perAccount(username: string): Counted {
    return { key: `login-failed:account:${accountKey(username)}`, limit: this.config.loginFailuresPerAccount };
  }

  private perAccountAndAddress(username: string, ctx: Context): Counted {
    return { key: `login-failed:account-address:${accountKey(username)}:${ctx.ip}`, limit: this.config.loginFailuresPerAccountAndAddress };
  }

  private knownAddressKey(username: string, ctx: Context): string {
    return `login-ok:${accountKey(username)}:${ctx.ip}`;
  }

  /** Whether the account signed in with its password from this address lately (then its own limit spares it). */
  private async knownAddress(username: string, ctx: Context): Promise<boolean> {
    return ((await this.counter.hit(this.knownAddressKey(username, ctx), KNOWN_ADDRESS_MS, 0))?.count ?? 0) > 0;
  }

  perAddress(ctx: Context): Counted {
    return { key: `login-failed:address:${ctx.ip}`, limit: this.config.loginFailuresPerAddress };
  }

  /** Refuses with 429 while any of the counters is at its limit; reading a counter does not count. */
  async refuseIfLimited(ctx: Context, counted: Counted[], who: string): Promise<void> {
    for (const { key, limit } of counted) {
      const seen = await this.counter.hit(key, this.windowMs, 0);
      if (seen && seen.count >= limit) {
        this.auth.audit.record({ who, action: 'login', allowed: false, reason: 'rate limited', address: ctx.ip });
        throw new RegistryError('TOO_MANY_REQUESTS', 'too many failed logins; try again later', null, {
          headers: { 'Retry-After': retryAfterSeconds(seen) },
        });
      }
    }
  }

  async countFailure(counted: Counted[]): Promise<void> {
    for (const { key } of counted) await this.counter.hit(key, this.windowMs);
  }

  /** Who the credentials prove the caller to be; 401 UNAUTHORIZED (or 429) otherwise. */
  async login(ctx: Context, username: string, password: string): Promise<Authenticated> {
    const counted = [this.perAccountAndAddress(username, ctx), this.perAddress(ctx)];
    if (isPassword(username, password)) counted.push(this.perAccount(username));
    const who = username.slice(0, 200);
    const known = counted.length > 2 && (await this.knownAddress(username, ctx));
    await this.refuseIfLimited(ctx, known ? counted.slice(0, 2) : counted, who);
    let authenticated: Authenticated | undefined;
    try {
      authenticated = await this.auth.authenticate(username, password, ctx.ip);
    } catch (err) {
      // Nobody was decided: not a failure of the caller's, so nothing is counted.
      if (!(err instanceof DirectoryUnavailableError)) throw err;
      this.auth.audit.record({ who, action: 'login', allowed: false, reason: err.message, address: ctx.ip });
      throw directoryUnavailable();
    }
    this.auth.audit.record({ who, action: 'login', allowed: authenticated !== undefined, address: ctx.ip });
    if (authenticated) {
      if (authenticated.credential.kind === 'password' && !known) await this.counter.hit(this.knownAddressKey(username, ctx), KNOWN_ADDRESS_MS);
      return authenticated;
    }
    await this.countFailure(counted);
    throw new RegistryError('UNAUTHORIZED', 'incorrect username or password');
  }
}
