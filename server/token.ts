// The token endpoint of the Docker registry token spec: GET /token (Basic credentials or none, `scope`
// repeated, `offline_token=true` for a refresh token) and POST /token (the OAuth2 form containerd and
// podman send: grant_type=password or refresh_token). Also the JWKS document with the signing key.
import type { Context } from 'koa';
import { ANONYMOUS, parseScopes, principalName, type Authenticated, type AuthService, type SignUpResult } from '../auth/index.ts';
import { retryAfterSeconds } from '../storage/index.ts';
import type { Config } from './config.ts';
import { readLimited, replyJson } from './distribution/http.ts';
import { RegistryError } from './errors.ts';
import { basicCredentials, type LoginGuard } from './login-guard.ts';

const MAX_FORM_BYTES = 64 * 1024;

export interface TokenDeps {
  auth: AuthService;
  config: Config;
  guard: LoginGuard;
}

function queryValues(ctx: Context, key: string): string[] {
  const value = ctx.query[key];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

const SIGN_UP_CLOSED = 'sign-up is closed on this registry; ask an administrator for an account';

/** A refused sign-up (AuthService.signUp) as the API answers it. */
function signUpRefusal(result: Exclude<SignUpResult, { ok: true }>): RegistryError {
  switch (result.refused) {
    case 'closed':
      return new RegistryError('DENIED', SIGN_UP_CLOSED);
    case 'too-many':
      return new RegistryError('TOO_MANY_REQUESTS', 'too many sign-ups from this address; try again later', null, {
        headers: { 'Retry-After': retryAfterSeconds(result.window) },
      });
    case 'taken':
      return new RegistryError('DENIED', result.reason, null, { status: 409 });
    case 'invalid':
      return new RegistryError('DENIED', result.reason, null, { status: 400 });
  }
}

export function tokenHandlers({ auth, config, guard }: TokenDeps) {
  const login = (ctx: Context, username: string, password: string) => guard.login(ctx, username, password);

  async function respond(ctx: Context, who: Authenticated, scopes: string[], refreshToken?: string): Promise<void> {
    const access = await auth.grant(who, parseScopes(scopes), ctx.ip);
    const issued = auth.tokens.issue(who.principal, who.limit, access);
    const body: Record<string, unknown> = {
      token: issued.token,
      access_token: issued.token,
      expires_in: issued.expiresIn,
      issued_at: issued.issuedAt,
    };
    if (refreshToken) body.refresh_token = refreshToken;
    ctx.set('Cache-Control', 'no-store');
    replyJson(ctx, 200, body);
  }

  const newRefreshToken = (who: Authenticated) =>
    who.principal.kind === 'anonymous' ? undefined : auth.accounts.createRefreshToken(who, principalName(who.principal), config.refreshTokenTtlSeconds);

  return {
    async GET(ctx: Context): Promise<void> {
      ctx.state.route = 'token';
      const credentials = basicCredentials(ctx);
      let who = ANONYMOUS;
      if (credentials) who = await login(ctx, credentials.username, credentials.password);
      else if (auth.mode === 'private') throw new RegistryError('UNAUTHORIZED', 'authentication required');
      const offline = ctx.query.offline_token === 'true';
      await respond(ctx, who, queryValues(ctx, 'scope'), offline ? await newRefreshToken(who) : undefined);
    },

    async POST(ctx: Context): Promise<void> {
      ctx.state.route = 'token';
      if (!ctx.is('application/x-www-form-urlencoded')) {
        throw new RegistryError('UNSUPPORTED', 'expected an application/x-www-form-urlencoded body', null, { status: 400 });
      }
      const form = new URLSearchParams((await readLimited(ctx, MAX_FORM_BYTES, 'token request')).toString('utf8'));
      const scopes = form.getAll('scope');
      const grantType = form.get('grant_type');
      if (grantType === 'password') {
        const who = await login(ctx, form.get('username') ?? '', form.get('password') ?? '');
        const offline = form.get('access_type') === 'offline';
        return respond(ctx, who, scopes, offline ? await newRefreshToken(who) : undefined);
      }
      if (grantType === 'refresh_token') {
        const presented = form.get('refresh_token') ?? '';
        const counted = [guard.perAddress(ctx)];
        await guard.refuseIfLimited(ctx, counted, 'unknown');
        const who = await auth.refresh(presented, ctx.ip);
        auth.audit.record({ who: who ? principalName(who.principal) : 'unknown', action: 'refresh', allowed: who !== undefined, address: ctx.ip });
        if (!who) {
          await guard.countFailure(counted);
          throw new RegistryError('UNAUTHORIZED', 'the refresh token is invalid, expired or revoked');
        }
        return respond(ctx, who, scopes, presented);
      }
      throw new RegistryError('UNSUPPORTED', 'grant_type must be password or refresh_token', { grant_type: grantType?.slice(0, 50) ?? null }, { status: 400 });
    },

    /** POST /api/v1/users {username, password}: sign-up, by the rules of AuthService.signUp. */
    async signUp(ctx: Context): Promise<void> {
      ctx.state.route = 'signup';
      if (!auth.signUpOpen) throw new RegistryError('DENIED', SIGN_UP_CLOSED);
      // Any page can make a browser post text/plain; only a script of this origin can send application/json.
      if (!ctx.is('application/json')) throw new RegistryError('UNSUPPORTED', 'expected an application/json body', null, { status: 415 });
      let body: { username?: unknown; password?: unknown };
      try {
        body = JSON.parse((await readLimited(ctx, MAX_FORM_BYTES, 'sign-up request')).toString('utf8')) as typeof body;
      } catch (err) {
        if (err instanceof RegistryError) throw err;
        throw new RegistryError('UNSUPPORTED', 'expected a JSON body {"username": …, "password": …}', null, { status: 400 });
      }
      if (typeof body?.username !== 'string' || typeof body.password !== 'string') {
        throw new RegistryError('UNSUPPORTED', 'expected a JSON body {"username": …, "password": …}', null, { status: 400 });
      }
      const result = await auth.signUp(body.username, body.password, { address: ctx.ip, via: 'api' });
      if (!result.ok) throw signUpRefusal(result);
      replyJson(ctx, 201, { username: body.username });
    },

    async jwks(ctx: Context): Promise<void> {
      ctx.state.route = 'jwks';
      replyJson(ctx, 200, { keys: [auth.key.jwk] });
    },
  };
}
