// The pages: search, repository, sign in / up / out, my repositories, repository settings (owners), and
// the images they show. Server-rendered; a form works without JavaScript; every post carries the CSRF token.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { namespaceOf } from '../auth/index.ts';
import { isOfficial, layout, retryAfterSeconds, type RepositoryEntry, type RepositorySummary } from '../storage/index.ts';
import { PAGE_SIZE, pageCount, repository, search, searchParams, tagPage, tagParams, windowsNameOf, windowsVerdicts, type SearchParams, type SearchResult } from './catalog.ts';
import { readForm } from './forms.ts';
import { badges, bytes, html, Html, page, SCRIPT, STYLE, when } from './html.ts';
import { LOGO_FILE_RE, LogoError, logoUrl, MAX_LOGO_BYTES, platformLabel, socialCard, storeLogo } from './images.ts';
import type { WebDeps } from './index.ts';
import { renderMarkdown } from './markdown.ts';
import { csrfMatches, Visibility, type Viewer } from './session.ts';

const ARCHITECTURES = ['amd64', 'arm64', 'arm/v7', 'arm/v6', '386', 'ppc64le', 's390x', 'riscv64'];
const MAX_FORM_BYTES = 256 * 1024;

export function pageRoutes(router: Router, deps: WebDeps): void {
  const { storage, auth, sessions } = deps;
  const signIn = auth !== undefined;
  const signUp = auth?.mode === 'public-index';
  const publicBase = deps.publicUrl?.replace(/\/+$/, '');
  const publicHost = publicBase && new URL(publicBase).host;

  async function reply(ctx: Context, status: number, title: string, body: Html, og?: { image: string; description: string }): Promise<void> {
    const viewer = await sessions.viewer(ctx);
    ctx.status = status;
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = page({ title, user: viewer.user, csrf: viewer.csrf, body, og, signIn, signUp });
  }

  const notFound = (ctx: Context) => reply(ctx, 404, 'Not found', html`<h1>Not found</h1><p>No repository by that name is visible to you.</p>`);

  /** The form, if its CSRF token is right; else the refusal is sent and undefined returned. */
  async function postedForm(ctx: Context, limit = MAX_FORM_BYTES) {
    const viewer = await sessions.viewer(ctx);
    const form = await readForm(ctx, deps.readBody, limit);
    if (!csrfMatches(viewer, form.fields.get('_csrf'))) {
      await reply(ctx, 403, 'Refused', html`<h1>Refused</h1><p class="error">The form's security token is missing or wrong. Reload the page and try again.</p>`);
      return undefined;
    }
    return { viewer, form };
  }

  // ---- search ----------------------------------------------------------------------------------
  function results(result: SearchResult, params: SearchParams): Html {
    const link = (p: number) => `/?${new URLSearchParams({ q: params.q, os: params.os ?? '', arch: params.architecture ?? '', sort: params.sort, ...(params.official ? { official: '1' } : {}), page: String(p) })}`;
    return html`<section id="results" aria-live="polite"><p>${result.total} ${result.total === 1 ? 'repository' : 'repositories'}</p>
<ul class="results">${result.results.map((e) => html`<li>${logo(e, 64)}<div><a href="/r/${e.name}"><strong>${e.name}</strong></a>${isOfficial(e.name) ? html` <span class="badge" role="img" aria-label="official image">official</span>` : ''}
<div>${e.description}</div><div>${badges(e)}</div><small>last pushed ${when(e.lastPushed)} · ${e.pulls} pulls</small></div></li>`)}</ul>
<nav aria-label="pages">${result.page > 1 ? html`<a href="${link(result.page - 1)}" rel="prev">Previous</a> ` : ''}page ${result.page} of ${result.pages}${result.page < result.pages ? html` <a href="${link(result.page + 1)}" rel="next">Next</a>` : ''}</nav></section>`;
  }

  function option(value: string, label: string, selected: string | undefined): Html {
    return html`<option value="${value}"${selected === value ? html` selected` : ''}>${label}</option>`;
  }

  /** In private mode a visitor sees nothing but the way to sign in. */
  async function signInFirst(ctx: Context): Promise<boolean> {
    if (auth?.mode !== 'private' || (await sessions.viewer(ctx)).user) return false;
    ctx.redirect('/signin');
    return true;
  }

  router.get('/', async (ctx) => {
    ctx.state.route = 'web-search';
    if (await signInFirst(ctx)) return;
    const params = searchParams(ctx.query);
    const viewer = await sessions.viewer(ctx);
    const result = await search(storage, new Visibility(auth, viewer), params);
    if (ctx.query.partial === '1') {
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = results(result, params).value;
      return;
    }
    await reply(ctx, 200, 'Search', html`<h1>Find an image</h1>
<form class="search" method="get" action="/" role="search">
<label for="q">Search names and descriptions<input id="q" name="q" type="search" value="${params.q}"></label>
<label for="os">OS<select id="os" name="os">${option('', 'any', params.os ?? '')}${option('linux', 'linux', params.os)}${option('windows', 'windows', params.os)}</select></label>
<label for="arch">Architecture<select id="arch" name="arch">${option('', 'any', params.architecture ?? '')}${ARCHITECTURES.map((a) => option(a, a, params.architecture))}</select></label>
<label for="official"><span>Official only</span><input id="official" name="official" type="checkbox" value="1"${params.official ? html` checked` : ''}></label>
<label for="sort">Sort by<select id="sort" name="sort">${option('name', 'name', params.sort)}${option('pushed', 'last pushed', params.sort)}${option('pulls', 'pulls', params.sort)}</select></label>
<button type="submit">Search</button></form>${results(result, params)}`);
  });

  // ---- repository ------------------------------------------------------------------------------
  function logo(entry: Pick<RepositorySummary, 'name' | 'logo'>, size: 256 | 64): Html {
    if (!entry.logo) return html``;
    return html`<picture><source srcset="${logoUrl(entry.name, entry.logo, size, 'webp')}" type="image/webp"><img src="${logoUrl(entry.name, entry.logo, size, 'png')}" width="${size}" height="${size}" alt="logo of ${entry.name}"></picture>`;
  }

  function pullCommand(id: string, label: string, command: string): Html {
    return html`<div class="pull"><span>${label}</span><code id="${id}">${command}</code><button type="button" data-copy="${id}" aria-label="Copy the ${label} command">Copy</button></div>`;
  }

  router.get('/r/{*name}', async (ctx) => {
    ctx.state.route = 'web-repository';
    if (await signInFirst(ctx)) return;
    const name = ctx.params.name ?? '';
    const visibility = new Visibility(auth, await sessions.viewer(ctx));
    const entry = await repository(storage, visibility, name);
    if (!entry) return notFound(ctx);
    const settings = (await storage.repositories.settings(name)) ?? {};
    // The configured public URL names the registry when there is one; else the host this page was asked on.
    const host = publicHost ?? ctx.host;
    const first = entry.newestTags[0]?.tag ?? 'latest';
    const owner = await visibility.may(name, 'delete');
    const params = tagParams(ctx.query);
    const found = await tagPage(storage, name, params);
    const pages = pageCount(found.total, params.n);
    const pageLink = (p: number) => `/r/${name}?${new URLSearchParams({ ...(params.prefix ? { tag: params.prefix } : {}), page: String(p) })}`;
    const tags = found.tags.map((t) => {
      const windows = windowsVerdicts(t);
      return html`<tr><th scope="row" rowspan="${Math.max(1, t.platforms.length)}">${t.tag}</th><td rowspan="${Math.max(1, t.platforms.length)}"><code title="${t.digest}">${t.digest.slice(0, 19)}…</code></td>
<td rowspan="${Math.max(1, t.platforms.length)}">${bytes(t.size)}</td><td rowspan="${Math.max(1, t.platforms.length)}">${when(t.pushedAt)}</td>
${t.platforms.length === 0 ? html`<td colspan="4">no platform (an artifact)</td></tr>` : t.platforms.map((p, i) => html`${i > 0 ? html`<tr>` : ''}<td class="platform">${platformLabel(p)}</td><td>${p.osVersion ?? ''}${p.osVersion && windowsNameOf(p.osVersion) ? html` (${windowsNameOf(p.osVersion)})` : ''}</td><td>${bytes(p.size)}</td><td><code>${p.digest.slice(7, 19)}</code></td></tr>`)}
${windows.length > 0 ? html`<tr><td colspan="8" class="windows">${windows.map((w) => html`<p><strong>Windows compatibility of ${t.tag} (${w.osVersion}${w.name ? `, ${w.name}` : ''}):</strong> runs with process isolation on ${w.process.length ? w.process.join(', ') : 'none of the listed hosts'}; with Hyper-V isolation on ${w.hyperv.length ? w.hyperv.join(', ') : 'no other listed host'}. Newer hosts than listed follow the same rule; older hosts cannot run it.</p>`)}</td></tr>` : ''}
${t.referrers.length > 0 ? html`<tr><td colspan="8">Referrers: ${t.referrers.map((r) => html`<span class="badge">${r.artifactType}</span> <code>${r.digest.slice(7, 19)}</code> `)}</td></tr>` : ''}`;
    });
    const og = { image: `${publicBase ?? `${ctx.protocol}://${ctx.host}`}/card/${name}`, description: entry.description || `${name} on Berth` };
    await reply(ctx, 200, name, html`<div class="repo-head">${logo(entry, 256)}<h1>${name}</h1>${isOfficial(name) ? html`<span class="badge">official</span>` : ''}${entry.visibility === 'private' ? html`<span class="badge">private</span>` : ''}
<p>${entry.description}</p><p>${badges(entry)}</p><p>${entry.pulls} pulls · last pushed ${when(entry.lastPushed)}</p>
${owner ? html`<p><a href="/settings/${name}">Settings</a></p>` : ''}</div>
<h2>Pull</h2>${pullCommand('docker-pull', 'docker', `docker pull ${host}/${name}:${first}`)}${pullCommand('podman-pull', 'podman', `podman pull ${host}/${name}:${first}`)}
<h2>Tags</h2><p>${entry.tagCount} ${entry.tagCount === 1 ? 'tag' : 'tags'}, newest first</p>
<form method="get" action="/r/${name}" role="search"><label for="tag">Tags starting with <input id="tag" name="tag" value="${params.prefix ?? ''}"></label> <button type="submit">Filter</button></form>
<table><thead><tr><th scope="col">tag</th><th scope="col">digest</th><th scope="col">compressed size</th><th scope="col">last pushed</th><th scope="col">platform</th><th scope="col">os.version</th><th scope="col">size</th><th scope="col">manifest</th></tr></thead><tbody>${tags}</tbody></table>
<nav aria-label="tag pages">${params.page > 1 ? html`<a href="${pageLink(params.page - 1)}" rel="prev">Newer</a> ` : ''}page ${params.page} of ${pages} (${found.total} ${params.prefix ? 'matching' : ''} tags)${params.page < pages ? html` <a href="${pageLink(params.page + 1)}" rel="next">Older</a>` : ''}</nav>
${settings.readme ? html`<h2>README</h2><div class="readme">${new Html(await renderMarkdown(settings.readme))}</div>` : ''}`, og);
  });

  // ---- sign in / up / out ------------------------------------------------------------------------
  function signInForm(viewer: Viewer, action: '/signin' | '/signup', error?: string, username = ''): Html {
    const title = action === '/signin' ? 'Sign in' : 'Sign up';
    return html`<h1>${title}</h1>${error ? html`<p class="error" role="alert">${error}</p>` : ''}<form method="post" action="${action}">
<input type="hidden" name="_csrf" value="${viewer.csrf}">
<p><label for="username">User name</label><br><input id="username" name="username" autocomplete="username" required value="${username}"></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="${action === '/signin' ? 'current-password' : 'new-password'}" required></p>
<p><button type="submit">${title}</button></p></form>`;
  }

  router.get('/signin', async (ctx) => {
    if (!auth) return notFound(ctx);
    await reply(ctx, 200, 'Sign in', signInForm(await sessions.viewer(ctx), '/signin'));
  });

  router.post('/signin', async (ctx) => {
    ctx.state.route = 'web-signin';
    if (!auth) return notFound(ctx);
    const posted = await postedForm(ctx);
    if (!posted) return;
    const username = (posted.form.fields.get('username') ?? '').trim().toLowerCase();
    // The same limits as /token and Basic on /v2: per account and per address, across every process.
    let who;
    try {
      who = await deps.login!.login(ctx, username, posted.form.fields.get('password') ?? '');
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'TOO_MANY_REQUESTS') return reply(ctx, 429, 'Sign in', signInForm(posted.viewer, '/signin', 'Too many failed sign-ins; try again later.', username));
      if (code !== 'UNAUTHORIZED') throw err;
    }
    if (!who || who.principal.kind !== 'user' || who.limit) {
      auth.audit.record({ who: username.slice(0, 200), action: 'web-signin', allowed: false, address: ctx.ip });
      return reply(ctx, 401, 'Sign in', signInForm(posted.viewer, '/signin', 'Wrong user name or password.', username));
    }
    auth.audit.record({ who: who.principal.name, action: 'web-signin', allowed: true, address: ctx.ip });
    await sessions.start(ctx, who.principal.name);
    ctx.redirect('/mine');
  });

  router.get('/signup', async (ctx) => {
    if (!signUp) return notFound(ctx);
    await reply(ctx, 200, 'Sign up', signInForm(await sessions.viewer(ctx), '/signup'));
  });

  router.post('/signup', async (ctx) => {
    ctx.state.route = 'web-signup';
    if (!auth || !signUp) return notFound(ctx);
    const posted = await postedForm(ctx);
    if (!posted) return;
    const username = (posted.form.fields.get('username') ?? '').trim();
    const result = await auth.signUp(username, posted.form.fields.get('password') ?? '', { address: ctx.ip, via: 'web' });
    if (!result.ok && result.refused === 'closed') return notFound(ctx);
    if (!result.ok && result.refused === 'too-many') {
      ctx.set('Retry-After', retryAfterSeconds(result.window));
      return reply(ctx, 429, 'Sign up', signInForm(posted.viewer, '/signup', 'Too many sign-ups from this address; try again later.', username));
    }
    if (!result.ok) return reply(ctx, 400, 'Sign up', signInForm(posted.viewer, '/signup', result.reason, username));
    await sessions.start(ctx, username);
    ctx.redirect('/mine');
  });

  router.post('/signout', async (ctx) => {
    const posted = await postedForm(ctx);
    if (!posted) return;
    await sessions.end(ctx);
    ctx.redirect('/');
  });

  router.get('/mine', async (ctx) => {
    ctx.state.route = 'web-mine';
    const viewer = await sessions.viewer(ctx);
    if (!viewer.user) return ctx.redirect('/signin');
    // Yours: your own namespace's and those of organisations you may push to (not all an admin could touch).
    const roles = new Map<string, string | undefined>();
    const candidates: RepositorySummary[] = [];
    for (const entry of await storage.search.search({})) {
      const namespace = namespaceOf(entry.name);
      if (auth && !roles.has(namespace)) roles.set(namespace, await auth.accounts.roleIn(namespace, viewer.principal));
      if (namespace === viewer.user || roles.get(namespace) === 'write' || roles.get(namespace) === 'admin') candidates.push(entry);
    }
    const visibility = new Visibility(auth, viewer);
    const mine: RepositorySummary[] = [];
    for (const entry of candidates) if (await visibility.may(entry.name, 'push')) mine.push(entry);
    const params: SearchParams = { q: '', official: false, sort: 'name', page: 1, n: Math.max(PAGE_SIZE, mine.length) };
    await reply(ctx, 200, 'My repositories', html`<h1>My repositories</h1>${results({ total: mine.length, page: 1, n: params.n, pages: 1, results: mine }, params)}`);
  });

  // ---- settings (owners) -----------------------------------------------------------------------
  async function ownedEntry(ctx: Context): Promise<RepositoryEntry | undefined> {
    const name = ctx.params.name ?? '';
    const viewer = await sessions.viewer(ctx);
    const visibility = new Visibility(auth, viewer);
    const entry = await repository(storage, visibility, name);
    if (!entry || (auth && !viewer.user) || !(await visibility.may(name, 'delete'))) return undefined;
    return entry;
  }

  async function settingsPage(ctx: Context, entry: RepositoryEntry, status = 200, message?: string, error = false): Promise<void> {
    const viewer = await sessions.viewer(ctx);
    const settings = (await storage.repositories.settings(entry.name)) ?? {};
    const visibility = settings.visibility ?? entry.visibility ?? 'public';
    await reply(ctx, status, `Settings of ${entry.name}`, html`<h1>Settings of <a href="/r/${entry.name}">${entry.name}</a></h1>
${message ? html`<p class="${error ? 'error' : 'notice'}" role="${error ? 'alert' : 'status'}">${message}</p>` : ''}
<form method="post" action="/settings/${entry.name}"><input type="hidden" name="_csrf" value="${viewer.csrf}">
<p><label for="description">Description</label><br><input id="description" name="description" maxlength="300" size="80" value="${settings.description ?? ''}"></p>
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
    if (!entry) return notFound(ctx);
    await settingsPage(ctx, entry);
  });

  router.post('/settings/{*name}', async (ctx) => {
    ctx.state.route = 'web-settings';
    const posted = await postedForm(ctx);
    if (!posted) return;
    const entry = await ownedEntry(ctx);
    if (!entry) return notFound(ctx);
    const fields = posted.form.fields;
    const visibility = fields.get('visibility');
    await storage.repositories.update(entry.name, {
      description: (fields.get('description') ?? '').replace(/\s+/g, ' ').trim().slice(0, 300),
      readme: (fields.get('readme') ?? '').slice(0, 100_000),
      ...(auth && (visibility === 'public' || visibility === 'private') ? { visibility } : {}),
    });
    await settingsPage(ctx, (await storage.search.entry(entry.name)) ?? entry, 200, 'Saved.');
  });

  router.post('/logo/{*name}', async (ctx) => {
    ctx.state.route = 'web-logo';
    const posted = await postedForm(ctx, MAX_LOGO_BYTES + 64 * 1024);
    if (!posted) return;
    const entry = await ownedEntry(ctx);
    if (!entry) return notFound(ctx);
    try {
      const hex = await storeLogo(storage.driver, posted.form.file?.content ?? Buffer.alloc(0));
      await storage.repositories.update(entry.name, { logo: hex });
    } catch (err) {
      if (!(err instanceof LogoError)) throw err;
      return settingsPage(ctx, entry, 400, `Logo refused: ${err.message}`, true);
    }
    await settingsPage(ctx, (await storage.search.entry(entry.name)) ?? entry, 200, 'Logo saved.');
  });

  // ---- images and assets -----------------------------------------------------------------------
  router.get('/images/{*path}', async (ctx) => {
    ctx.state.route = 'web-image';
    const path = ctx.params.path ?? '';
    const slash = path.lastIndexOf('/');
    const file = path.slice(slash + 1);
    const hex = LOGO_FILE_RE.exec(file)?.[1];
    // Through the repository that shows it only: a private repository's logo, asked for by someone who may
    // not pull it, gets the very answer a repository that does not exist gets.
    const entry = hex && slash > 0 ? await repository(storage, new Visibility(auth, await sessions.viewer(ctx)), path.slice(0, slash)) : undefined;
    const content = entry && entry.logo === hex ? await storage.driver.getContent(layout.image(file)) : undefined;
    if (!entry || !content) return notFound(ctx);
    const shared = !auth || (auth.mode !== 'private' && entry.visibility === 'public');
    ctx.type = file.endsWith('.webp') ? 'image/webp' : 'image/png';
    ctx.set('Cache-Control', shared ? 'public, max-age=3600' : 'private, no-cache');
    ctx.body = content;
  });

  router.get('/card/{*name}', async (ctx) => {
    ctx.state.route = 'web-card';
    const entry = await repository(storage, new Visibility(auth, await sessions.viewer(ctx)), ctx.params.name ?? '');
    if (!entry) return notFound(ctx);
    ctx.type = 'image/png';
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = await socialCard(storage.driver, entry, publicHost);
  });

  router.get('/static/berth.css', (ctx) => {
    ctx.type = 'text/css';
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.body = STYLE;
  });
  router.get('/static/berth.js', (ctx) => {
    ctx.type = 'application/javascript';
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.body = SCRIPT;
  });
}
