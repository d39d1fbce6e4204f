// The signed-in person's personal access tokens: list, create (scope, expiry; the secret on the answer
// page once), revoke. Plain forms with the CSRF token; every rule is AccountManagement's.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { TOKEN_DEFAULT_SCOPE } from '../../auth/index.ts';
import { html, type Html, when } from '../html.ts';
import { registryHost, type PageKit } from './kit.ts';
import { credentialFields, credentialState, linesOf, notice, orRefusal, postedByManager, scopeText, secretOnce, signedIn, type Manager } from './manage.ts';

export function tokenPages(router: Router, kit: PageKit): void {
  const { management } = kit.deps;

  async function tokensPage(ctx: Context, manager: Manager, status = 200, message?: string, error = false, made?: Html): Promise<void> {
    const { viewer, actor } = manager;
    const tokens = await management.tokens(actor, viewer.user);
    await kit.reply(ctx, status, 'Personal access tokens', html`<h1>Personal access tokens</h1>
<p><a href="/account">Your account</a></p>${notice(message, error)}${made ?? ''}
<table id="tokens"><caption>Your tokens</caption><thead><tr><th>Description</th><th>Id</th><th>Scopes</th><th>Created</th><th>Expires</th><th>State</th><th></th></tr></thead><tbody>
${tokens.map((t) => html`<tr data-id="${t.id}"><td>${t.description}</td><td><code>${t.id}</code></td><td><code>${scopeText(t.scopes)}</code></td><td>${when(t.createdAt)}</td><td>${t.expiresAt ? when(t.expiresAt) : 'never'}</td><td>${credentialState(t)}</td>
<td>${t.revokedAt ? '' : html`<form method="post" action="/account/tokens/${t.id}/revoke" class="inline"><input type="hidden" name="_csrf" value="${viewer.csrf}"><button type="submit" aria-label="Revoke token ${t.description || t.id}">Revoke</button></form>`}</td></tr>`)}
</tbody></table>${tokens.length ? '' : html`<p class="note">No tokens yet.</p>`}
<h2>New token</h2><form method="post" action="/account/tokens" id="new-token"><input type="hidden" name="_csrf" value="${viewer.csrf}">
<p><label for="description">Description</label><br><input id="description" name="description" maxlength="300" size="60"></p>
${credentialFields(TOKEN_DEFAULT_SCOPE)}<p><button type="submit">Create token</button></p></form>`);
  }

  router.get('/account/tokens', async (ctx) => {
    ctx.state.route = 'web-tokens';
    const manager = await signedIn(kit, ctx);
    if (manager) await tokensPage(ctx, manager);
  });

  router.post('/account/tokens', async (ctx) => {
    ctx.state.route = 'web-tokens';
    const posted = await postedByManager(kit, ctx);
    if (!posted) return;
    const { manager, fields } = posted;
    await orRefusal(async () => {
      const { secret } = await management.createToken(manager.actor, manager.viewer.user, {
        description: fields.get('description') ?? '',
        scopes: linesOf(fields.get('scopes')),
        expiresIn: fields.get('expiresIn'),
      });
      await tokensPage(ctx, manager, 201, undefined, false, secretOnce('token', manager.viewer.user, secret, registryHost(kit, ctx)));
    }, (status, message) => tokensPage(ctx, manager, status, `Not created: ${message}`, true));
  });

  router.post('/account/tokens/:id/revoke', async (ctx) => {
    ctx.state.route = 'web-token-revoke';
    const posted = await postedByManager(kit, ctx);
    if (!posted) return;
    const { manager } = posted;
    await orRefusal(async () => {
      await management.revokeToken(manager.actor, manager.viewer.user, ctx.params.id!);
      await tokensPage(ctx, manager, 200, 'Token revoked: it no longer logs in, and what it gave stops at the next refresh.');
    }, (status, message) => tokensPage(ctx, manager, status, message, true));
  });
}
