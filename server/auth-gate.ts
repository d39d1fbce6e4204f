// The auth gate every /v2 route passes: a bearer token that grants what the route needs, or a 401 with
// the challenge that tells the client where to get one. A private repository and a missing one get the
// same answer, because the answer depends only on the token and the request, never on what is stored.
import type { Context } from 'koa';
import { createHash } from 'node:crypto';
import { grants, limitOf, principalName, principalOf, type AccessEntry, type Action, type Authenticated, type AuthService, type TokenClaims } from '../auth/index.ts';
import type { Config } from './config.ts';
import { RegistryError } from './errors.ts';
import { basicCredentials, type LoginGuard } from './login-guard.ts';

export type AccessNeed = { kind: 'base' } | { kind: 'catalog' } | { kind: 'repository'; name: string; action: Action };

function scopeOf(need: AccessNeed): { scope?: string; detail: unknown } {
  if (need.kind === 'base') return { detail: null };
  if (need.kind === 'catalog') return { scope: 'registry:catalog:*', detail: [{ Type: 'registry', Class: '', Name: 'catalog', Action: '*' }] };
  // A push needs pull too (a client checks for blobs before it uploads them), as Distribution asks.
  const actions = need.action === 'push' ? ['pull', 'push'] : [need.action];
  return {
    scope: `repository:${need.name}:${actions.join(',')}`,
    detail: actions.map((Action) => ({ Type: 'repository', Class: '', Name: need.name, Action })),
  };
}

const MAX_BASIC_CACHED = 1000;

export class AuthGate {
  // Basic credentials that proved who the caller is, by a hash of the header: a client sending them with
  // every request (curl -u) must not pay a password hash on each. Only the hash is saved, never the
  // account: each use asks storage whether the credential still stands (AuthService.current), so a password
  // change, a revocation or a removal made by any process counts from the next request, on every worker.
  private readonly basicLogins = new Map<string, Authenticated>();

  constructor(
    /** Undefined in `open` mode: no authentication at all. */
    private readonly auth: AuthService | undefined,
    private readonly config: Config,
    private readonly guard?: LoginGuard,
  ) {}

  get enabled(): boolean {
    return this.auth !== undefined;
  }

  realm(ctx: Context): string {
    return this.config.authRealm ?? `${(this.config.publicUrl ?? `${ctx.protocol}://${ctx.host}`).replace(/\/+$/, '')}/token`;
  }

  private refuse(ctx: Context, need: AccessNeed, error?: 'invalid_token' | 'insufficient_scope'): RegistryError {
    const { scope, detail } = scopeOf(need);
    let challenge = `Bearer realm="${this.realm(ctx)}",service="${this.config.authService}"`;
    if (scope) challenge += `,scope="${scope}"`;
    if (error) challenge += `,error="${error}"`;
    return new RegistryError('UNAUTHORIZED', undefined, detail, { headers: { 'WWW-Authenticate': challenge } });
  }

  /** Lets the request through, with its verified claims in ctx.state.claims, or throws the 401. */
  async check(ctx: Context, need: AccessNeed): Promise<void> {
    if (!this.auth) return;
    const header = ctx.get('Authorization');
    const basic = /^Basic /i.test(header) && this.guard !== undefined;
    const claims = basic ? await this.claimsFromBasic(ctx, need, header, this.auth, this.guard!) : this.claimsFromBearer(ctx, need, header, this.auth);
    ctx.state.claims = claims;
    if (need.kind === 'base') return;
    const ok = need.kind === 'catalog' ? grants(claims, 'registry', 'catalog', '*') : grants(claims, 'repository', need.name, need.action);
    if (!ok) {
      // A Basic login's refusal was audited when its access was granted; a token's is audited here.
      if (!basic) this.audit(ctx, need, claims.sub || 'anonymous', 'token lacks the scope');
      throw this.refuse(ctx, need, 'insufficient_scope');
    }
  }

  private audit(ctx: Context, need: AccessNeed, who: string, reason: string): void {
    const repository = need.kind === 'repository' ? need.name : undefined;
    const action = need.kind === 'repository' ? need.action : need.kind;
    this.auth!.audit.record({ who, action, repository, allowed: false, reason, address: ctx.ip });
  }

  private claimsFromBearer(ctx: Context, need: AccessNeed, header: string, auth: AuthService): TokenClaims {
    if (!/^Bearer /i.test(header)) throw this.refuse(ctx, need);
    const verified = auth.tokens.verify(header.slice(7).trim());
    if (verified.ok) return verified.claims;
    this.audit(ctx, need, 'unknown', verified.reason);
    throw this.refuse(ctx, need, 'invalid_token');
  }

  /**
   * Basic credentials sent straight to /v2 (curl -u, as Harbor allows): checked like a login at the token
   * endpoint (same limits), then the route's need is granted or refused as a token request for it would be.
   */
  private async claimsFromBasic(ctx: Context, need: AccessNeed, header: string, auth: AuthService, guard: LoginGuard): Promise<TokenClaims> {
    const credentials = basicCredentials(ctx);
    if (!credentials) throw this.refuse(ctx, need);
    const key = createHash('sha256').update(header).digest('base64url');
    const cached = this.basicLogins.get(key);
    let who = cached && (await auth.current(principalName(cached.principal), cached.credential, ctx.ip));
    this.basicLogins.delete(key);
    if (!who) {
      try {
        who = await guard.login(ctx, credentials.username, credentials.password);
      } catch (err) {
        if (err instanceof RegistryError && err.code === 'UNAUTHORIZED') throw this.refuse(ctx, need, 'invalid_token');
        throw err;
      }
    }
    // Re-inserted on each use: the least recently used goes first when the cache is full.
    this.basicLogins.set(key, who);
    if (this.basicLogins.size > MAX_BASIC_CACHED) this.basicLogins.delete(this.basicLogins.keys().next().value!);
    let access: AccessEntry[] = [];
    if (need.kind === 'catalog') access = await auth.grant(who, [{ type: 'registry', name: 'catalog', actions: ['*'] }], ctx.ip);
    else if (need.kind === 'repository') access = await auth.grant(who, [{ type: 'repository', name: need.name, actions: [need.action] }], ctx.ip);
    return auth.tokens.claims(who.principal, who.limit, access);
  }

  /**
   * Who the caller is, as the owner of what it opens (an upload session): its kind and name, so that a
   * user and a robot never share one. Undefined in open mode, where nobody is anyone.
   */
  owner(ctx: Context): string | undefined {
    if (!this.auth) return undefined;
    const claims = ctx.state.claims as TokenClaims | undefined;
    const who = claims ? principalOf(claims) : ({ kind: 'anonymous' } as const);
    return who.kind === 'anonymous' ? 'anonymous' : `${who.kind}:${who.name}`;
  }

  /** Whether the caller may pull `name`, for the places that touch a repository the route does not name: a mount's source. */
  async mayPull(ctx: Context, name: string): Promise<boolean> {
    if (!this.auth) return true;
    const claims = ctx.state.claims as TokenClaims | undefined;
    if (!claims) return false;
    return grants(claims, 'repository', name, 'pull') || (await this.auth.allowed(principalOf(claims), name, limitOf(claims))).has('pull');
  }

  /**
   * The catalog's page: from index `start` of the sorted names, up to `count` that the caller may pull
   * (what the token grants, or what the caller may do), in their order. What the caller may not see is
   * passed over in memory.
   */
  async catalogPage(ctx: Context, names: readonly string[], start: number, count: number): Promise<string[]> {
    if (!this.auth) return names.slice(start, start + count);
    const claims = ctx.state.claims as TokenClaims | undefined;
    if (!claims) return [];
    const granted = (name: string) => grants(claims, 'repository', name, 'pull');
    return this.auth.pullableNames(principalOf(claims), names, limitOf(claims), { start, count, granted });
  }
}
