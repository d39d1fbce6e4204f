// A repository's page: its head (logo, description, badges, pulls), the pull commands, one page of its
// tags with their platforms, Windows verdicts and referrers, and its README.
import type Router from '@koa/router';
import { isOfficial, type TagFacts } from '../../storage/index.ts';
import { pageCount, repository, TAG_PAGE_SIZE, tagPage, tagParams, windowsVerdicts } from '../catalog.ts';
import { badges, bytes, html, Html, join, when } from '../html.ts';
import { platformLabel } from '../images.ts';
import { renderMarkdown } from '../markdown.ts';
import { logo, mirrorBadge, option, osVersionLabel, pager, pullCommand, registryHost, windowsNotes, type PageKit } from './kit.ts';

const COLUMNS = ['tag', 'digest', 'compressed size', 'last pushed', 'platform', 'os.version', 'size', 'manifest'];

/** A tag's rows: one per platform, then its Windows verdicts and its referrers across the table. */
function tagRows(name: string, t: TagFacts): Html {
  const span = Math.max(1, t.platforms.length);
  const windows = windowsVerdicts(t.platforms);
  return join(
    html`<tr><th scope="row" rowspan="${span}"><a href="/r/${name}/tags/${t.tag}">${t.tag}</a></th><td rowspan="${span}"><code title="${t.digest}">${t.digest.slice(0, 19)}…</code></td>\n`,
    html`<td rowspan="${span}">${bytes(t.size)}</td><td rowspan="${span}">${when(t.pushedAt)}</td>\n`,
    t.platforms.length === 0
      ? html`<td colspan="4">no platform (an artifact)</td></tr>`
      : html`${t.platforms.map((p, i) => html`${i > 0 ? html`<tr>` : ''}<td class="platform">${platformLabel(p)}</td><td>${osVersionLabel(p.osVersion)}</td><td>${bytes(p.size)}</td><td><a href="/r/${name}/manifests/${p.digest}"><code>${p.digest.slice(7, 19)}</code></a></td></tr>`)}`,
    html`\n${windows.length > 0 ? html`<tr><td colspan="8" class="windows">${windowsNotes(t.tag, windows)}</td></tr>` : ''}\n`,
    t.referrers.length > 0 ? html`<tr><td colspan="8">Referrers: ${t.referrers.map((r) => html`<span class="badge">${r.artifactType}</span> <code>${r.digest.slice(7, 19)}</code> `)}</td></tr>` : html``,
  );
}

export function repositoryPages(router: Router, kit: PageKit): void {
  const { storage } = kit.deps;

  router.get('/r/{*name}', async (ctx) => {
    ctx.state.route = 'web-repository';
    if (await kit.signInFirst(ctx)) return;
    const name = ctx.params.name ?? '';
    const visibility = await kit.visibility(ctx);
    const entry = await repository(storage, visibility, name);
    if (!entry) return kit.notFound(ctx);
    const settings = (await storage.repositories.settings(name)) ?? {};
    const host = registryHost(kit, ctx);
    const first = entry.newestTags[0]?.tag ?? 'latest';
    const owner = await visibility.may(name, 'delete');
    const params = tagParams(ctx.query);
    const found = await tagPage(storage, name, params);
    const pages = pageCount(found.total, params.n);
    // Page links keep the filter, the order and the page size they were made with.
    const pageLink = (p: number) =>
      `/r/${name}?${new URLSearchParams({ ...(params.prefix ? { tag: params.prefix } : {}), sort: params.sort, ...(params.n !== TAG_PAGE_SIZE ? { n: String(params.n) } : {}), page: String(p) })}`;
    const og = { image: `${kit.publicBase ?? `${ctx.protocol}://${ctx.host}`}/card/${name}`, description: entry.description || `${name} on Berth` };
    await kit.reply(ctx, 200, name, html`<div class="repo-head">${logo(entry, 256)}<h1>${name}</h1>${isOfficial(name) ? html`<span class="badge">official</span>` : ''}${entry.visibility === 'private' ? html`<span class="badge">private</span>` : ''}${mirrorBadge(kit.deps, name)}
<p>${entry.description}</p><p>${badges(entry)}</p><p>${entry.pulls} pulls · last pushed ${when(entry.lastPushed)}</p>
${owner ? html`<p><a href="/settings/${name}">Settings</a></p>` : ''}</div>
<h2>Pull</h2>${pullCommand('docker-pull', 'docker', `docker pull ${host}/${name}:${first}`)}${pullCommand('podman-pull', 'podman', `podman pull ${host}/${name}:${first}`)}
<h2>Tags</h2><p>${entry.tagCount} ${entry.tagCount === 1 ? 'tag' : 'tags'}, ${params.sort === 'name' ? 'by name' : 'newest first'}</p>
<form method="get" action="/r/${name}" role="search"><label for="tag">Tags starting with <input id="tag" name="tag" value="${params.prefix ?? ''}"></label>
<label for="tag-sort">Sort by <select id="tag-sort" name="sort">${option('pushed', 'last pushed', params.sort)}${option('name', 'name', params.sort)}</select></label> <button type="submit">Filter</button></form>
<table><thead><tr>${COLUMNS.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead><tbody>${found.tags.map((t) => tagRows(name, t))}</tbody></table>
${pager('tag pages', params.page, pages, pageLink, params.sort === 'name' ? { prev: 'Previous', next: 'Next' } : { prev: 'Newer', next: 'Older' }, ` (${found.total} ${params.prefix ? 'matching' : ''} tags)`)}
${settings.readme ? html`<h2>README</h2><div class="readme">${new Html(await renderMarkdown(settings.readme))}</div>` : ''}`, og);
  });
}
