// The image behind a tag or digest (/r/NAME/tags/TAG, /r/NAME/manifests/DIGEST): an index's platforms,
// each linked to its own page; an image's layers (foreign ones with their URLs and Windows base), history,
// config, annotations, referrers and Windows verdicts. Everything from the stored manifest and config
// (web/inspect.ts), through the repository's visibility exactly as its page.
import type Router from '@koa/router';
import type { Context, Next } from 'koa';
import { isValidTag, tryParseDigest, type Reference } from '../../storage/index.ts';
import { repository, windowsVerdicts } from '../catalog.ts';
import { bytes, html, type Html, join } from '../html.ts';
import { platformLabel } from '../images.ts';
import { inspect, type Bounded, type ChildFacts, type ConfigFacts, type ConfigState, type Inspection, type LayerFacts, type ReferrerGroup } from '../inspect.ts';
import { osVersionLabel, pullCommand, registryHost, windowsNotes, type PageKit } from './kit.ts';

type Shown<K extends Inspection['kind']> = Extract<Inspection, { kind: K }>;

const SOURCE = 'org.opencontainers.image.source';
/** Annotations (and labels) whose value is a page about the image: shown as a link when it is http(s). */
const LINKED = new Set([SOURCE, 'org.opencontainers.image.documentation', 'org.opencontainers.image.url']);

/** The URL itself when it is http or https; anything else (javascript:, data:, a path) is never a link. */
function webUrl(value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : undefined;
  } catch {
    return undefined;
  }
}

function link(url: string, text: string): Html {
  return html`<a href="${url}" rel="nofollow noopener noreferrer">${text}</a>`;
}

/**
 * An annotation's or label's value: a link for source, documentation and url; the revision as a link to
 * its commit under the source (the `/commit/<sha>` that GitHub, GitLab and Gitea serve) when both allow.
 */
function metadataValue(key: string, value: string, all: Map<string, string>): Html {
  const url = webUrl(value);
  if (LINKED.has(key) && url) return link(url, value);
  if (key === 'org.opencontainers.image.revision') {
    const source = webUrl(all.get(SOURCE));
    if (url) return link(url, value);
    if (source && /^[0-9a-f]{7,64}$/i.test(value)) return link(`${source.replace(/(?:\.git)?\/*$/, '')}/commit/${value}`, value);
  }
  return html`${value}`;
}

function more(list: Bounded<unknown>): Html {
  return list.omitted > 0 ? html`<p class="note">… and ${list.omitted} more, not shown.</p>` : html``;
}

function metadataTable(caption: string, id: string, list: Bounded<[string, string]>): Html {
  if (list.items.length === 0) return html``;
  const all = new Map(list.items);
  return html`<table id="${id}"><caption>${caption}</caption><thead><tr><th scope="col">key</th><th scope="col">value</th></tr></thead>
<tbody>${list.items.map(([k, v]) => html`<tr><th scope="row"><code>${k}</code></th><td>${metadataValue(k, v, all)}</td></tr>`)}</tbody></table>${more(list)}`;
}

function words(list: string[] | undefined): Html {
  return list === undefined ? html`<span class="note">not set</span>` : html`<code>${JSON.stringify(list)}</code>`;
}

function fact(term: string, value: Html | string | undefined): Html {
  return value === undefined || value === '' ? html`` : html`<dt>${term}</dt><dd>${value}</dd>`;
}

function layerSource(layer: LayerFacts, osVersion: string | undefined): Html {
  if (!layer.foreign) return html`this registry`;
  return join(
    html`<strong>foreign layer</strong>${layer.base ? html` from <code>windows/${layer.base}</code>${osVersion ? html`, build ${osVersionLabel(osVersion)}` : ''}` : ''}`,
    html`<ul class="urls">${layer.urls.map((u) => html`<li>${webUrl(u) ? link(webUrl(u)!, u) : html`<code>${u}</code>`}</li>`)}</ul>`,
  );
}

function layersSection(layers: Bounded<LayerFacts>, osVersion: string | undefined): Html {
  return html`<h2>Layers</h2><table id="layers"><thead><tr><th scope="col">#</th><th scope="col">digest</th><th scope="col">media type</th><th scope="col">compressed size</th><th scope="col">from</th></tr></thead>
<tbody>${layers.items.map((l, i) => html`<tr class="${l.foreign ? 'foreign' : ''}"><td>${i + 1}</td><td><code title="${l.digest}">${l.digest.slice(0, 19)}…</code></td><td><code>${l.mediaType}</code></td><td>${bytes(l.size)}</td><td>${layerSource(l, osVersion)}</td></tr>`)}</tbody></table>${more(layers)}`;
}

function historySection(config: ConfigFacts): Html {
  if (config.history.items.length === 0) return html``;
  return html`<h2>History</h2><ol id="history">${config.history.items.map((h) => join(
    html`<li class="${h.emptyLayer ? 'empty-layer' : ''}"><code>${h.createdBy || '(no command recorded)'}</code>`,
    html`${h.emptyLayer ? html` <span class="badge">no layer</span>` : ''}${h.comment ? html` <small>${h.comment}</small>` : ''}${h.created ? html` <small>${h.created}</small>` : ''}</li>`,
  ))}</ol>${more(config.history)}`;
}

function configSection(config: ConfigState, digest: string, mediaType: string, limit: number): Html {
  const head = html`<h2>Config</h2><p><code title="${digest}">${digest.slice(0, 19)}…</code> <code>${mediaType}</code></p>`;
  if (config.state === 'too-large') return html`${head}<p class="note">The config (${bytes(config.size)}) is larger than the manifest limit (${bytes(limit)}): not shown.</p>`;
  if (config.state === 'missing') return html`${head}<p class="note">No config is stored for this manifest.</p>`;
  if (config.state === 'not-an-image-config') return html`${head}<p class="note">The config is not an image config (an artifact's): nothing to show.</p>`;
  const c = config.facts;
  const list = (items: Bounded<string>) => (items.items.length === 0 ? undefined : html`<ul>${items.items.map((e) => html`<li><code>${e}</code></li>`)}</ul>${more(items)}`);
  return html`${head}<dl class="facts" id="config">
${fact('Entrypoint', words(c.entrypoint))}${fact('Cmd', words(c.cmd))}${fact('Env', list(c.env))}${fact('Exposed ports', list(c.exposedPorts))}
${fact('Volumes', list(c.volumes))}${fact('User', c.user)}${fact('Working dir', c.workingDir)}${fact('Stop signal', c.stopSignal)}${fact('Author', c.author)}</dl>
${metadataTable('Labels', 'labels', c.labels)}${historySection(c)}`;
}

function referrersSection(name: string, groups: ReferrerGroup[]): Html {
  if (groups.length === 0) return html``;
  return html`<h2>Referrers</h2><p>Signatures, SBOMs and other artifacts about this manifest, by artifact type.</p><div id="referrers">${groups.map((g) => html`<h3><code>${g.artifactType}</code> (${g.referrers.length})</h3>
<ul>${g.referrers.map((r) => html`<li><a href="/r/${name}/manifests/${r.digest}"><code>${r.digest.slice(0, 19)}…</code></a> ${bytes(r.size)}${r.created ? html` · ${r.created}` : ''}</li>`)}</ul>`)}</div>`;
}

function platformsSection(name: string, shown: Shown<'index'>): Html {
  const runnable = shown.children.items.filter((c) => !c.attestation);
  const attestations = shown.children.items.filter((c) => c.attestation);
  const row = (c: ChildFacts) => html`<tr><td class="platform">${c.platform ? platformLabel(c.platform) : 'unknown'}</td><td>${osVersionLabel(c.platform?.osVersion)}</td>
<td><a href="/r/${name}/manifests/${c.digest}"><code title="${c.digest}">${c.digest.slice(0, 19)}…</code></a></td><td>${bytes(c.size)}</td><td><code>${c.mediaType}</code></td></tr>`;
  const table = (id: string, rows: ChildFacts[]) => html`<table id="${id}"><thead><tr><th scope="col">platform</th><th scope="col">os.version</th><th scope="col">manifest</th><th scope="col">size</th><th scope="col">media type</th></tr></thead><tbody>${rows.map(row)}</tbody></table>`;
  return html`<h2>Platforms</h2><p>An index: each platform is an image of its own.</p>${table('platforms', runnable)}${more(shown.children)}
${attestations.length > 0 ? html`<h2>Attestations</h2>${table('attestations', attestations)}` : ''}`;
}

function manifestFacts(shown: Exclude<Inspection, { kind: 'missing' }>, platform?: Html): Html {
  return html`<dl class="facts" id="manifest">${fact('Digest', html`<code>${shown.digest}</code>`)}${fact('Media type', html`<code>${shown.mediaType}</code>`)}
${platform ? fact('Platform', platform) : ''}${shown.kind === 'image' ? fact('Compressed size', bytes(shown.compressedSize)) : ''}${shown.kind !== 'not-shown' && shown.artifactType ? fact('Artifact type', html`<code>${shown.artifactType}</code>`) : ''}
${shown.kind === 'image' && shown.config.state === 'read' ? fact('Created', shown.config.facts.created) : ''}</dl>`;
}

export function imagePages(router: Router, kit: PageKit): void {
  const { storage, maxManifestBytes } = kit.deps;

  /** `what` names the reference in the page (`:1.0`, `@sha256:…`); `full` is the path read as one repository name. */
  const show = (read: (ctx: Context) => { reference?: Reference; what: string; full: string }) => async (ctx: Context, next: Next) => {
    ctx.state.route = 'web-image-page';
    if (await kit.signInFirst(ctx)) return;
    const name = ctx.params.name ?? '';
    const { reference, what, full } = read(ctx);
    const visibility = await kit.visibility(ctx);
    // Not a repository the viewer may pull: the repository page answers for the whole path (a repository
    // may be named `x/tags/y`), and says "not found" as it does for every hidden or missing one.
    if (!(await repository(storage, visibility, name))) return next();
    const shown = reference ? await inspect(storage, name, reference, maxManifestBytes) : ({ kind: 'missing' } as const);
    if (shown.kind === 'missing') {
      if (await repository(storage, visibility, full)) return next();
      return kit.reply(ctx, 404, 'Not found', html`<h1>Not found</h1><p><a href="/r/${name}">${name}</a> has no manifest <code>${what}</code>.</p>`);
    }
    const host = registryHost(kit, ctx);
    const pullRef = reference?.kind === 'tag' ? `:${reference.tag}` : `@${shown.digest}`;
    const title = `${name}${reference?.kind === 'tag' ? `:${reference.tag}` : `@${shown.digest.slice(0, 19)}…`}`;
    const config = shown.kind === 'image' && shown.config.state === 'read' ? shown.config.facts : undefined;
    const platform = config?.os && config.architecture ? { os: config.os, architecture: config.architecture, variant: config.variant, osVersion: config.osVersion } : undefined;
    const windows = shown.kind === 'index'
      ? windowsVerdicts(shown.children.items.flatMap((c) => (c.platform ? [c.platform] : [])))
      : windowsVerdicts(platform ? [platform] : []);
    let body: Html;
    if (shown.kind === 'not-shown') {
      body = html`<p class="note">${shown.reason === 'too-large' ? html`This manifest (${bytes(shown.size)}) is larger than the manifest limit (${bytes(shown.limit)}): not shown.` : 'This manifest can no longer be read: not shown.'}</p>`;
    } else if (shown.kind === 'index') {
      body = platformsSection(name, shown);
    } else {
      body = join(layersSection(shown.layers, platform?.osVersion), configSection(shown.config, shown.configDigest, shown.configMediaType, maxManifestBytes));
    }
    await kit.reply(ctx, 200, title, html`<p class="crumbs"><a href="/r/${name}">${name}</a></p><h1>${title}</h1>
${manifestFacts(shown, platform ? html`${platformLabel(platform)}${platform.osVersion ? html` · ${osVersionLabel(platform.osVersion)}` : ''}` : undefined)}
${shown.kind !== 'not-shown' && shown.subject ? html`<p>Refers to <a href="/r/${name}/manifests/${shown.subject}"><code>${shown.subject.slice(0, 19)}…</code></a>.</p>` : ''}
<h2>Pull</h2>${pullCommand('docker-pull', 'docker', `docker pull ${host}/${name}${pullRef}`)}${pullCommand('podman-pull', 'podman', `podman pull ${host}/${name}${pullRef}`)}
${windows.length > 0 ? html`<h2>Windows hosts</h2><div class="windows">${windowsNotes(title, windows)}</div>` : ''}
${body}
${shown.kind !== 'not-shown' ? html`${metadataTable('Annotations', 'annotations', shown.annotations)}${referrersSection(name, shown.referrers)}` : ''}`);
  };

  router.get('/r/{*name}/tags/:tag', show((ctx) => {
    const tag = ctx.params.tag ?? '';
    return { reference: isValidTag(tag) ? { kind: 'tag', tag } : undefined, what: `:${tag}`, full: `${ctx.params.name}/tags/${tag}` };
  }));
  router.get('/r/{*name}/manifests/:digest', show((ctx) => {
    const digest = tryParseDigest(ctx.params.digest ?? '');
    return { reference: digest && { kind: 'digest', digest }, what: `@${ctx.params.digest}`, full: `${ctx.params.name}/manifests/${ctx.params.digest}` };
  }));
}
