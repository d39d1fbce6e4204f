// Sign in, sign up and sign out: forms that work without JavaScript and carry the CSRF token.
import type Router from '@koa/router';
import { retryAfterSeconds } from '../../storage/index.ts';
import { html, type Html } from '../html.ts';
import type { Viewer } from '../session.ts';
import type { PageKit } from './kit.ts';

function signInForm(viewer: Viewer, action: '/signin' | '/signup', error?: string, username = '', provider?: string): Html {
  const title = action === '/signin' ? 'Sign in' : 'Sign up';
  // The OpenID provider's door (web/pages/oidc.ts), beside the password form that local accounts keep.
  const other = action === '/signin' && provider ? html`<p><a class="button" href="/signin/oidc">Sign in with ${provider}</a></p>` : '';
  return html`<h1>${title}</h1>${error ? html`<p class="error" role="alert">${error}</p>` : ''}<form method="post" action="${action}">
<input type="hidden" name="_csrf" value="${viewer.csrf}">
<p><label for="username">User name</label><br><input id="username" name="username" autocomplete="username" required value="${username}"></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="${action === '/signin' ? 'current-password' : 'new-password'}" required></p>
<p><button type="submit">${title}</button></p></form>${other}`;
}

export function accountPages(router: Router, kit: PageKit): void {
  const { auth, sessions } = kit.deps;
  const signUp = auth?.mode === 'public-index';

  router.get('/signin', async (ctx) => {
    if (!auth) return kit.notFound(ctx);
    await kit.reply(ctx, 200, 'Sign in', signInForm(await sessions.viewer(ctx), '/signin', undefined, '', kit.deps.auth?.oidc && kit.deps.oidcName));
  });

  router.post('/signin', async (ctx) => {
    ctx.state.route = 'web-signin';
    if (!auth) return kit.notFound(ctx);
    const posted = await kit.postedForm(ctx);
    if (!posted) return;
    const username = (posted.form.fields.get('username') ?? '').trim().toLowerCase();
    // The same limits as /token and Basic on /v2: per account and per address, across every process.
    let who;
    try {
      who = await kit.deps.login!.login(ctx, username, posted.form.fields.get('password') ?? '');
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'TOO_MANY_REQUESTS') return kit.reply(ctx, 429, 'Sign in', signInForm(posted.viewer, '/signin', 'Too many failed sign-ins; try again later.', username));
      if (code === 'UNAVAILABLE') return kit.reply(ctx, 503, 'Sign in', signInForm(posted.viewer, '/signin', 'The directory that checks passwords does not answer; try again shortly.', username));
      if (code !== 'UNAUTHORIZED') throw err;
    }
    if (!who || who.principal.kind !== 'user' || who.limit) {
      auth.audit.record({ who: username.slice(0, 200), action: 'web-signin', allowed: false, address: ctx.ip });
      return kit.reply(ctx, 401, 'Sign in', signInForm(posted.viewer, '/signin', 'Wrong user name or password.', username));
    }
    auth.audit.record({ who: who.principal.name, action: 'web-signin', allowed: true, address: ctx.ip });
    await sessions.start(ctx, who.principal.name);
    ctx.redirect('/mine');
  });

  router.get('/signup', async (ctx) => {
    if (!signUp) return kit.notFound(ctx);
    await kit.reply(ctx, 200, 'Sign up', signInForm(await sessions.viewer(ctx), '/signup'));
  });

  router.post('/signup', async (ctx) => {
    ctx.state.route = 'web-signup';
    if (!auth || !signUp) return kit.notFound(ctx);
    const posted = await kit.postedForm(ctx);
    if (!posted) return;
    const username = (posted.form.fields.get('username') ?? '').trim();
    const result = await auth.signUp(username, posted.form.fields.get('password') ?? '', { address: ctx.ip, via: 'web' });
    if (!result.ok && result.refused === 'closed') return kit.notFound(ctx);
    if (!result.ok && result.refused === 'too-many') {
      ctx.set('Retry-After', retryAfterSeconds(result.window));
      return kit.reply(ctx, 429, 'Sign up', signInForm(posted.viewer, '/signup', 'Too many sign-ups from this address; try again later.', username));
    }
    if (!result.ok) return kit.reply(ctx, 400, 'Sign up', signInForm(posted.viewer, '/signup', result.reason, username));
    await sessions.start(ctx, username);
    ctx.redirect('/mine');
  });

  router.post('/signout', async (ctx) => {
    const posted = await kit.postedForm(ctx);
    if (!posted) return;
    if (posted.viewer.user) auth?.audit.record({ who: posted.viewer.user, action: 'web-signout', allowed: true, address: ctx.ip });
    await sessions.end(ctx);
    ctx.redirect('/');
  });
}
