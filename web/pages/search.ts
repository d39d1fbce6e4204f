// The search page (with its partial results for live search) and "my repositories", which shows its list
// the same way.
import type Router from '@koa/router';
import { namespaceOf } from '../../auth/index.ts';
import { isOfficial, type RepositorySummary } from '../../storage/index.ts';
import { PAGE_SIZE, search, searchParams, type SearchParams, type SearchResult } from '../catalog.ts';
import { badges, html, type Html, join, when } from '../html.ts';
import { logo, mirrorBadge, option, pager, type PageKit } from './kit.ts';

const ARCHITECTURES = ['amd64', 'arm64', 'arm/v7', 'arm/v6', '386', 'ppc64le', 's390x', 'riscv64'];

function results(kit: PageKit, result: SearchResult, params: SearchParams): Html {
  const link = (p: number) => `/?${new URLSearchParams({ q: params.q, os: params.os ?? '', arch: params.architecture ?? '', sort: params.sort, ...(params.official ? { official: '1' } : {}), page: String(p) })}`;
  const item = (e: RepositorySummary) => join(
    html`<li>${logo(e, 64)}<div><a href="/r/${e.name}"><strong>${e.name}</strong></a>`,
    html`${isOfficial(e.name) ? html` <span class="badge" role="img" aria-label="official image">official</span>` : ''}${mirrorBadge(kit.deps, e.name)}\n`,
    html`<div>${e.description}</div><div>${badges(e)}</div><small>last pushed ${when(e.lastPushed)} · ${e.pulls} pulls</small></div></li>`,
  );
  return html`<section id="results" aria-live="polite"><p>${result.total} ${result.total === 1 ? 'repository' : 'repositories'}</p>
<ul class="results">${result.results.map(item)}</ul>
${pager('pages', result.page, result.pages, link, { prev: 'Previous', next: 'Next' })}</section>`;
}

function searchForm(params: SearchParams): Html {
  return html`<form class="search" method="get" action="/" role="search">
<label for="q">Search names and descriptions<input id="q" name="q" type="search" value="${params.q}"></label>
<label for="os">OS<select id="os" name="os">${option('', 'any', params.os ?? '')}${option('linux', 'linux', params.os)}${option('windows', 'windows', params.os)}</select></label>
<label for="arch">Architecture<select id="arch" name="arch">${option('', 'any', params.architecture ?? '')}${ARCHITECTURES.map((a) => option(a, a, params.architecture))}</select></label>
<label for="official"><span>Official only</span><input id="official" name="official" type="checkbox" value="1"${params.official ? html` checked` : ''}></label>
<label for="sort">Sort by<select id="sort" name="sort">${option('name', 'name', params.sort)}${option('pushed', 'last pushed', params.sort)}${option('pulls', 'pulls', params.sort)}</select></label>
<button type="submit">Search</button></form>`;
}

export function searchPages(router: Router, kit: PageKit): void {
  const { storage, auth, sessions } = kit.deps;

  router.get('/', async (ctx) => {
    ctx.state.route = 'web-search';
    if (await kit.signInFirst(ctx)) return;
    const params = searchParams(ctx.query);
    const result = await search(storage, await kit.visibility(ctx), params);
    if (ctx.query.partial === '1') {
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = results(kit, result, params).value;
      return;
    }
    await kit.reply(ctx, 200, 'Search', html`<h1>Find an image</h1>
${searchForm(params)}${results(kit, result, params)}`);
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
    const visibility = await kit.visibility(ctx);
    const mine: RepositorySummary[] = [];
    for (const entry of candidates) if (await visibility.may(entry.name, 'push')) mine.push(entry);
    const params: SearchParams = { q: '', official: false, sort: 'name', page: 1, n: Math.max(PAGE_SIZE, mine.length) };
    await kit.reply(ctx, 200, 'My repositories', html`<h1>My repositories</h1>${results(kit, { total: mine.length, page: 1, n: params.n, pages: 1, results: mine }, params)}`);
  });
}
