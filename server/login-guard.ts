// Credentials checked with failed attempts counted per account and per address across every process
// (Redis, or the cluster's primary): once either passes its limit, even the right password waits for
// the window to end. Used by the token endpoint and by Basic credentials sent straight to /v2.
import type { Context } from 'koa';
import type { Authenticated, AuthService } from '../auth/index.ts';
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

export class LoginGuard {
  private readonly windowMs: number;

  constructor(
    private readonly auth: AuthService,
    private readonly config: Config,
    private readonly counter: RateCounter,
  ) {
    this.windowMs = config.loginFailureWindowSeconds * 1000;
  }

  perAccount(username: string): Counted {
    return { key: `login-failed:account:${username.toLowerCase().slice(0, 200)}`, limit: this.config.loginFailuresPerAccount };
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
    const counted = [this.perAccount(username), this.perAddress(ctx)];
    const who = username.slice(0, 200);
    await this.refuseIfLimited(ctx, counted, who);
    const authenticated = await this.auth.accounts.authenticate(username, password);
    this.auth.audit.record({ who, action: 'login', allowed: authenticated !== undefined, address: ctx.ip });
    if (authenticated) return authenticated;
    await this.countFailure(counted);
    throw new RegistryError('UNAUTHORIZED', 'incorrect username or password');
  }
}
