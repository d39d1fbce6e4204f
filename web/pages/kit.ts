// What every page family shares: the reply in the site's layout, the not-found answer (the same for a
// missing and a hidden repository), the CSRF-checked form, private mode's sign-in-first, and the small
// pieces of markup more than one family draws.
import type { Context } from 'koa';
import type { RepositorySummary } from '../../storage/index.ts';
import { windowsNameOf, type WindowsVerdicts } from '../catalog.ts';
import { readForm } from '../forms.ts';
import { html, type Html, join, page } from '../html.ts';
import { logoUrl } from '../images.ts';
import type { WebDeps } from '../index.ts';
import { csrfMatches, Visibility } from '../session.ts';

const MAX_FORM_BYTES = 256 * 1024;

export interface PageKit {
  deps: WebDeps;
  /** BERTH_PUBLIC_URL without its trailing slash, and its host: what pull commands and cards name. */
  publicBase?: string;
  publicHost?: string;
  reply(ctx: Context, status: number, title: string, body: Html, og?: { image: string; description: string }): Promise<void>;
  notFound(ctx: Context): Promise<void>;
  /** The form, if its CSRF token is right; else the refusal is sent and undefined returned. */
  postedForm(ctx: Context, limit?: number): Promise<{ viewer: Awaited<ReturnType<WebDeps['sessions']['viewer']>>; form: Awaited<ReturnType<typeof readForm>> } | undefined>;
  /** In private mode a visitor sees nothing but the way to sign in: true when redirected there. */
  signInFirst(ctx: Context): Promise<boolean>;
  visibility(ctx: Context): Promise<Visibility>;
}

export function pageKit(deps: WebDeps): PageKit {
  const { auth, sessions } = deps;
  const signIn = auth !== undefined;
  const signUp = auth?.mode === 'public-index';
  const publicBase = deps.publicUrl?.replace(/\/+$/, '');
  const kit: PageKit = {
    deps,
    publicBase,
    publicHost: publicBase && new URL(publicBase).host,
    async reply(ctx, status, title, body, og) {
      const viewer = await sessions.viewer(ctx);
      ctx.status = status;
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = page({ title, user: viewer.user, csrf: viewer.csrf, body, og, signIn, signUp });
    },
    notFound: (ctx) => kit.reply(ctx, 404, 'Not found', html`<h1>Not found</h1><p>No repository by that name is visible to you.</p>`),
    async postedForm(ctx, limit = MAX_FORM_BYTES) {
      const viewer = await sessions.viewer(ctx);
      const form = await readForm(ctx, deps.readBody, limit);
      if (!csrfMatches(viewer, form.fields.get('_csrf'))) {
        // A forged post is an identity decision too: whose session a stranger's page tried to use.
        auth?.audit.record({ who: viewer.user ?? 'anonymous', action: 'web-form', allowed: false, reason: `CSRF token missing or wrong: ${ctx.method} ${ctx.path.slice(0, 300)}`, address: ctx.ip });
        await kit.reply(ctx, 403, 'Refused', html`<h1>Refused</h1><p class="error">The form's security token is missing or wrong. Reload the page and try again.</p>`);
        return undefined;
      }
      return { viewer, form };
    },
    async signInFirst(ctx) {
      if (auth?.mode !== 'private' || (await sessions.viewer(ctx)).user) return false;
      ctx.redirect('/signin');
      return true;
    },
    visibility: async (ctx) => new Visibility(auth, await sessions.viewer(ctx)),
  };
  return kit;
}

export function option(value: string, label: string, selected: string | undefined): Html {
  return html`<option value="${value}"${selected === value ? html` selected` : ''}>${label}</option>`;
}

/** "mirror of registry-1.docker.io/library/alpine" for a repository a mirror holds; nothing otherwise. */
export function mirrorBadge(deps: Pick<WebDeps, 'mirroredFrom'>, name: string): Html | '' {
  const from = deps.mirroredFrom?.(name);
  return from ? html` <span class="badge mirror">mirror of ${from}</span>` : '';
}

export function logo(entry: Pick<RepositorySummary, 'name' | 'logo'>, size: 256 | 64): Html {
  if (!entry.logo) return html``;
  return join(
    html`<picture><source srcset="${logoUrl(entry.name, entry.logo, size, 'webp')}" type="image/webp">`,
    html`<img src="${logoUrl(entry.name, entry.logo, size, 'png')}" width="${size}" height="${size}" alt="logo of ${entry.name}"></picture>`,
  );
}

/** A command to copy: shown once, whole (`docker pull …`); the button names the client for screen readers. */
export function pullCommand(id: string, client: string, command: string): Html {
  return html`<div class="pull"><code id="${id}">${command}</code><button type="button" data-copy="${id}" aria-label="Copy the ${client} command">Copy</button></div>`;
}

/** The registry's host as pull commands name it: the configured public URL's, else the one this page was asked on. */
export function registryHost(kit: PageKit, ctx: Context): string {
  return kit.publicHost ?? ctx.host;
}

/** `10.0.17763.5329 (Windows Server 2019)`, or the version alone when its build has no well-known name. */
export function osVersionLabel(osVersion: string | undefined): Html {
  if (!osVersion) return html``;
  const name = windowsNameOf(osVersion);
  return html`${osVersion}${name ? html` (${name})` : ''}`;
}

/** Which well-known Windows hosts run the image, and with which isolation. */
export function windowsNotes(subject: string, verdicts: WindowsVerdicts[]): Html {
  return html`${verdicts.map((w) => join(
    html`<p><strong>Windows compatibility of ${subject} (${w.osVersion}${w.name ? `, ${w.name}` : ''}):</strong> `,
    html`runs with process isolation on ${w.process.length ? w.process.join(', ') : 'none of the listed hosts'}; `,
    html`with Hyper-V isolation on ${w.hyperv.length ? w.hyperv.join(', ') : 'no other listed host'}. `,
    html`Newer hosts than listed follow the same rule; older hosts cannot run it.</p>`,
  ))}`;
}

/** "Previous · page 2 of 5 · Next" for any paged list. */
export function pager(label: string, pageNumber: number, pages: number, link: (p: number) => string, words: { prev: string; next: string }, note: Html | string = ''): Html {
  return join(
    html`<nav aria-label="${label}">${pageNumber > 1 ? html`<a href="${link(pageNumber - 1)}" rel="prev">${words.prev}</a> ` : ''}page ${pageNumber} of ${pages}${note}`,
    html`${pageNumber < pages ? html` <a href="${link(pageNumber + 1)}" rel="next">${words.next}</a>` : ''}</nav>`,
  );
}
