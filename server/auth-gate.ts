// The auth gate every /v2 route passes: a bearer token that grants what the route needs, or a 401 with
// the challenge that tells the client where to get one. A private repository and a missing one get the
// same answer, because the answer depends only on the token and the request, never on what is stored.
import type { Context } from 'koa';
import { grants, limitOf, principalName, principalOf, type Action, type AuthService, type TokenClaims } from '../auth/index.ts';
import type { Config } from './config.ts';
import { RegistryError } from './errors.ts';

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

export class AuthGate {
  constructor(
    /** Undefined in `open` mode: no authentication at all. */
    private readonly auth: AuthService | undefined,
    private readonly config: Config,
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
  check(ctx: Context, need: AccessNeed): void {
    if (!this.auth) return;
    const header = ctx.get('Authorization');
    if (!/^Bearer /i.test(header)) throw this.refuse(ctx, need);
    const verified = this.auth.tokens.verify(header.slice(7).trim());
    if (!verified.ok) {
      this.auth.audit.record({ who: 'unknown', action: need.kind === 'repository' ? need.action : need.kind, repository: need.kind === 'repository' ? need.name : undefined, allowed: false, reason: verified.reason, address: ctx.ip });
      throw this.refuse(ctx, need, 'invalid_token');
    }
    const claims = verified.claims;
    ctx.state.claims = claims;
    if (need.kind === 'base') return;
    const ok = need.kind === 'catalog' ? grants(claims, 'registry', 'catalog', '*') : grants(claims, 'repository', need.name, need.action);
    if (!ok) {
      this.auth.audit.record({ who: claims.sub || 'anonymous', action: need.kind === 'catalog' ? 'catalog' : need.action, repository: need.kind === 'repository' ? need.name : undefined, allowed: false, reason: 'token lacks the scope', address: ctx.ip });
      throw this.refuse(ctx, need, 'insufficient_scope');
    }
  }

  /**
   * Whether the caller may pull `name`, for the places that touch a repository the route does not name:
   * a mount's source, the catalog's entries.
   */
  async mayPull(ctx: Context, name: string): Promise<boolean> {
    if (!this.auth) return true;
    const claims = ctx.state.claims as TokenClaims | undefined;
    if (!claims) return false;
    if (grants(claims, 'repository', name, 'pull')) return true;
    return (await this.auth.allowed(principalOf(claims), name, limitOf(claims))).has('pull');
  }

  /** The caller's account name for logs: `anonymous` without one. */
  who(ctx: Context): string {
    const claims = ctx.state.claims as TokenClaims | undefined;
    return claims ? principalName(principalOf(claims)) : 'anonymous';
  }
}
