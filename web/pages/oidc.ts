// Sign-in through the OpenID provider (BERTH_OIDC_ISSUER): /signin/oidc sends the browser there with what
// it must bring back (state, nonce, PKCE verifier) sealed in a short-lived cookie of its own path;
// /signin/oidc/callback takes that cookie once (cleared before anything else) and starts a session. Every
// decision is auth's (OidcSignIn); a provider that does not answer is a 503 page, and the password form
// (local admins) keeps working beside it.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { PENDING_TTL_MS, ProviderUnavailableError } from '../../auth/index.ts';
import { html } from '../html.ts';
import type { PageKit } from './kit.ts';

const PENDING_COOKIE = 'berth_oidc';

export function oidcPages(router: Router, kit: PageKit): void {
  const oidc = kit.deps.auth?.oidc;
  const name = kit.deps.oidcName ?? 'OpenID Connect';
  const pendingCookie = (ctx: Context, maxAge: number) => ({ httpOnly: true, sameSite: 'lax' as const, path: '/signin/oidc', secure: ctx.secure, overwrite: true, maxAge });
  const unavailable = (ctx: Context) =>
    kit.reply(ctx, 503, 'Sign in', html`<h1>Sign in</h1><p class="error" role="alert">${name} does not answer; try again shortly. Accounts of this registry can still <a href="/signin">sign in with a password</a>.</p>`);
  const refused = (ctx: Context) =>
    kit.reply(ctx, 400, 'Sign in', html`<h1>Sign in</h1><p class="error" role="alert">The sign-in through ${name} was refused. <a href="/signin/oidc">Start again</a>.</p>`);

  router.get('/signin/oidc', async (ctx) => {
    ctx.state.route = 'web-signin-oidc';
    if (!oidc) return kit.notFound(ctx);
    ctx.set('Cache-Control', 'no-store');
    let begun;
    try {
      begun = await oidc.begin(ctx.ip);
    } catch (err) {
      if (err instanceof ProviderUnavailableError) return unavailable(ctx);
      throw err;
    }
    ctx.cookies.set(PENDING_COOKIE, begun.pending, pendingCookie(ctx, PENDING_TTL_MS));
    ctx.redirect(begun.url);
  });

  router.get('/signin/oidc/callback', async (ctx) => {
    ctx.state.route = 'web-signin-oidc';
    if (!oidc) return kit.notFound(ctx);
    ctx.set('Cache-Control', 'no-store');
    // Single use: whatever happens next, this browser's sign-in cannot be completed twice.
    const pending = ctx.cookies.get(PENDING_COOKIE);
    ctx.cookies.set(PENDING_COOKIE, '', pendingCookie(ctx, 0));
    let result;
    try {
      result = await oidc.complete(oidc.callbackUrl(ctx.querystring), pending, ctx.ip);
    } catch (err) {
      if (err instanceof ProviderUnavailableError) return unavailable(ctx);
      throw err;
    }
    if (!result.ok || result.who.principal.kind !== 'user') return refused(ctx);
    await kit.deps.sessions.start(ctx, result.who.principal.name);
    ctx.redirect('/mine');
  });
}
