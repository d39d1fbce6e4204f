// A repository's settings, for who may delete it: description, README, visibility, logo.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { MAX_DESCRIPTION, type RepositoryEntry } from '../../storage/index.ts';
import { repository } from '../catalog.ts';
import { html } from '../html.ts';
import { LogoError, MAX_LOGO_BYTES } from '../images.ts';
import { logo, option, type PageKit } from './kit.ts';

export function settingsPages(router: Router, kit: PageKit): void {
  const { storage, auth, sessions, logos } = kit.deps;

  async function ownedEntry(ctx: Context): Promise<RepositoryEntry | undefined> {
    const name = ctx.params.name ?? '';
    const viewer = await sessions.viewer(ctx);
    const visibility = await kit.visibility(ctx);
    const entry = await repository(storage, visibility, name);
    if (!entry || (auth && !(viewer.user && (await auth.managesRepository(viewer.principal, name, viewer.limit))))) return undefined;
    return entry;
  }

  async function settingsPage(ctx: Context, entry: RepositoryEntry, status = 200, message?: string, error = false): Promise<void> {
    const viewer = await sessions.viewer(ctx);
    const settings = (await storage.repositories.settings(entry.name)) ?? {};
    const visibility = settings.visibility ?? entry.visibility ?? 'public';
    await kit.reply(ctx, status, `Settings of ${entry.name}`, html`<h1>Settings of <a href="/r/${entry.name}">${entry.name}</a></h1>
${message ? html`<p class="${error ? 'error' : 'notice'}" role="${error ? 'alert' : 'status'}">${message}</p>` : ''}
<form method="post" action="/settings/${entry.name}"><input type="hidden" name="_csrf" value="${viewer.csrf}">
<p><label for="description">Description</label><br><input id="description" name="description" maxlength="${MAX_DESCRIPTION}" size="80" value="${settings.description ?? ''}"></p>
<p><label for="readme">README (Markdown)</label><br><textarea id="readme" name="readme" rows="14" cols="80">${settings.readme ?? ''}</textarea></p>
${auth ? html`<p><label for="visibility">Visibility</label><br><select id="visibility" name="visibility">${option('public', 'public', visibility)}${option('private', 'private', visibility)}</select></p>` : ''}
<p><button type="submit">Save</button></p></form>
<h2>Logo</h2>${logo(entry, 64)}
<form method="post" action="/logo/${entry.name}" enctype="multipart/form-data"><input type="hidden" name="_csrf" value="${viewer.csrf}">
<p><label for="logo">PNG, JPEG or WebP, up to ${MAX_LOGO_BYTES / 1024 / 1024} MiB</label><br><input id="logo" name="logo" type="file" accept="image/png,image/jpeg,image/webp" required></p>
<p><button type="submit">Upload logo</button></p></form>`);
  }

  router.get('/settings/{*name}', async (ctx) => {
    ctx.state.route = 'web-settings';
    const entry = await ownedEntry(ctx);
    if (!entry) return kit.notFound(ctx);
    await settingsPage(ctx, entry);
  });

  router.post('/settings/{*name}', async (ctx) => {
    ctx.state.route = 'web-settings';
    const posted = await kit.postedForm(ctx);
    if (!posted) return;
    const entry = await ownedEntry(ctx);
    if (!entry) return kit.notFound(ctx);
    const fields = posted.form.fields;
    const visibility = fields.get('visibility');
    await storage.repositories.update(entry.name, { description: fields.get('description') ?? '', readme: fields.get('readme') ?? '' });
    // Visibility through AuthService, as the CLI and the admin API set it; a form's other values are ignored.
    if (auth && (visibility === 'public' || visibility === 'private')) await auth.setVisibility(entry.name, visibility);
    auth?.audit.record({ who: posted.viewer.user ?? 'anonymous', action: 'repo settings', repository: entry.name, allowed: true, reason: `web; visibility ${visibility ?? 'unchanged'}`, address: ctx.ip });
    await settingsPage(ctx, (await storage.search.entry(entry.name)) ?? entry, 200, 'Saved.');
  });

  router.post('/logo/{*name}', async (ctx) => {
    ctx.state.route = 'web-logo';
    const posted = await kit.postedForm(ctx, MAX_LOGO_BYTES + 64 * 1024);
    if (!posted) return;
    const entry = await ownedEntry(ctx);
    if (!entry) return kit.notFound(ctx);
    try {
      const hex = await logos.store(posted.form.file?.content ?? Buffer.alloc(0));
      await storage.repositories.update(entry.name, { logo: hex });
    } catch (err) {
      if (!(err instanceof LogoError)) throw err;
      return settingsPage(ctx, entry, 400, `Logo refused: ${err.message}`, true);
    }
    await settingsPage(ctx, (await storage.search.entry(entry.name)) ?? entry, 200, 'Logo saved.');
  });
}
