// The token endpoint of the Docker registry token spec: GET /token (Basic credentials or none, `scope`
// repeated, `offline_token=true` for a refresh token) and POST /token (the OAuth2 form containerd and
// podman send: grant_type=password or refresh_token). Also the JWKS document with the signing key.
import type { Context } from 'koa';
import { AccountError, ANONYMOUS, SIGN_UPS_PER_ADDRESS_PER_HOUR, signUpCounterKey, parseScopes, principalName, type Authenticated, type AuthService } from '../auth/index.ts';
import { retryAfterSeconds, type RateCounter } from '../storage/index.ts';
import type { Config } from './config.ts';
import { readLimited, replyJson } from './distribution/http.ts';
import { RegistryError } from './errors.ts';
import { basicCredentials, type LoginGuard } from './login-guard.ts';

const MAX_FORM_BYTES = 64 * 1024;

export interface TokenDeps {
  auth: AuthService;
  config: Config;
  counter: RateCounter;
  guard: LoginGuard;
}

function queryValues(ctx: Context, key: string): string[] {
  const value = ctx.query[key];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

export function tokenHandlers({ auth, config, counter, guard }: TokenDeps) {
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

    /**
     * POST /api/v1/users {username, password}: sign-up, open in public-index mode only. Attempts are
     * limited per address, so that nobody mass-registers namespaces.
     */
    async signUp(ctx: Context): Promise<void> {
      ctx.state.route = 'signup';
      if (auth.mode !== 'public-index') throw new RegistryError('DENIED', 'sign-up is closed on this registry; ask an administrator for an account');
      // Any page can make a browser post text/plain; only a script of this origin can send application/json.
      if (!ctx.is('application/json')) throw new RegistryError('UNSUPPORTED', 'expected an application/json body', null, { status: 415 });
      const hit = await counter.hit(signUpCounterKey(ctx.ip), 3600_000);
      if (hit && hit.count > SIGN_UPS_PER_ADDRESS_PER_HOUR) {
        throw new RegistryError('TOO_MANY_REQUESTS', 'too many sign-ups from this address; try again later', null, {
          headers: { 'Retry-After': retryAfterSeconds(hit) },
        });
      }
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
      try {
        await auth.accounts.signUp(body.username, body.password);
      } catch (err) {
        if (!(err instanceof AccountError)) throw err;
        auth.audit.record({ who: body.username.slice(0, 200), action: 'sign-up', allowed: false, reason: err.message, address: ctx.ip });
        throw new RegistryError('DENIED', err.message, null, { status: /taken/.test(err.message) ? 409 : 400 });
      }
      auth.audit.record({ who: body.username, action: 'sign-up', allowed: true, address: ctx.ip });
      replyJson(ctx, 201, { username: body.username });
    },

    async jwks(ctx: Context): Promise<void> {
      ctx.state.route = 'jwks';
      replyJson(ctx, 200, { keys: [auth.key.jwk] });
    },
  };
}
