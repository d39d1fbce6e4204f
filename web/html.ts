// HTML made on the server: every interpolated value passes through `esc`, so nothing a user typed (a
// repository description, a tag, a query) can become markup.
import type { RepositoryEntry } from '../storage/index.ts';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Markup that is already safe (made by these templates or by the sanitiser). */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

/** A template tag: values are escaped unless they are Html (or arrays of it). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1]!;
  });
  return new Html(out);
}

/** Markup made of pieces, so that a long template can be written as several short ones. */
export function join(...parts: Html[]): Html {
  return new Html(parts.map((p) => p.value).join(''));
}

function render(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === undefined || value === null || value === false) return '';
  return esc(value);
}

export interface PageOptions {
  title: string;
  user?: string;
  csrf: string;
  body: Html;
  /** Open Graph image and description for link previews. */
  og?: { image: string; description: string };
  signUp: boolean;
  signIn: boolean;
}

export function page(options: PageOptions): string {
  const nav = options.user
    ? html`<a href="/mine">My repositories</a> <a href="/account">Account</a>
        <form method="post" action="/signout" class="inline"><input type="hidden" name="_csrf" value="${options.csrf}"><button type="submit">Sign out ${options.user}</button></form>`
    : options.signIn
      ? html`<a href="/signin">Sign in</a>${options.signUp ? html` <a href="/signup">Sign up</a>` : ''}`
      : '';
  const og = options.og
    ? html`<meta property="og:title" content="${options.title}"><meta property="og:description" content="${options.og.description}"><meta property="og:image" content="${options.og.image}"><meta name="twitter:card" content="summary_large_image">`
    : '';
  return `<!doctype html>${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${options.title} · Berth</title>${og}<link rel="icon" href="/static/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/static/berth.css"><script src="/static/berth.js" defer></script></head>
<body><header><a href="/" class="brand">Berth</a><nav>${nav}</nav></header><main>${options.body}</main></body></html>`}`;
}

export function badges(entry: Pick<RepositoryEntry, 'os' | 'architectures'>): Html {
  return html`<span class="badges">${entry.os.map((os) => html`<span class="badge os-${os}" role="img" aria-label="OS ${os}" title="OS ${os}">${os}</span>`)}${entry.architectures.map(
    (a) => html`<span class="badge arch" role="img" aria-label="architecture ${a}" title="architecture ${a}">${a}</span>`,
  )}</span>`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function when(iso: string | undefined): Html {
  if (!iso) return html`never`;
  return html`<time datetime="${iso}">${iso.replace('T', ' ').slice(0, 16)} UTC</time>`;
}

export const STYLE = `
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1.2rem;background:#0b3d5c;color:#fff}
header a,header button{color:#fff;margin-left:1rem;background:none;border:0;font:inherit;cursor:pointer;text-decoration:underline}
.brand{font-weight:700;font-size:1.3rem;text-decoration:none;margin-left:0}
main{max-width:70rem;margin:1rem auto;padding:0 1rem}
form.inline{display:inline}
.search{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin-bottom:1rem}
.search label{display:flex;flex-direction:column;font-size:.85rem}
input,select,textarea,button{font:inherit;padding:.3rem}
ul.results{list-style:none;padding:0}
ul.results li{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.7rem;margin-bottom:.5rem;display:flex;gap:.8rem}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;margin-right:.25rem;font-size:.8rem;background:#ddf4ff;border:1px solid #54aeff}
.badge.os-windows{background:#fff8c5;border-color:#d4a72c}
.badge.os-linux{background:#dafbe1;border-color:#4ac26b}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;font-size:.9rem}
code{font-family:ui-monospace,monospace}
.pull{display:flex;gap:.5rem;align-items:center;margin:.3rem 0}
.error{color:#a40e26;font-weight:600}
.repo-head picture img{float:right;width:128px;height:128px}
.readme{background:#fff;border:1px solid #d0d7de;padding:1rem;border-radius:6px}
:focus{outline:3px solid #0969da;outline-offset:1px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;background:#fff;border:1px solid #d0d7de;padding:.6rem;border-radius:6px}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
caption{text-align:left;font-weight:600;padding:.4rem 0}
.note{color:#57606a}
ul.urls{margin:.2rem 0;padding-left:1.2rem;overflow-wrap:anywhere}
ol#history li{margin-bottom:.3rem;overflow-wrap:anywhere}
ol#history li.empty-layer code{color:#57606a}
`;

/** The site's icon: a white B on the header's blue, small enough to send with every first visit. */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#0b3d5c"/><text x="16" y="23" font-family="sans-serif" font-size="20" font-weight="700" fill="#fff" text-anchor="middle">B</text></svg>`;

/** Copy buttons (the command stays selectable without JavaScript) and search that updates as you type. */
export const SCRIPT = `
document.addEventListener('click', async (e) => {
  const button = e.target.closest('button[data-copy]');
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent;
  try { await navigator.clipboard.writeText(text); } catch { const r = document.createRange(); r.selectNodeContents(document.getElementById(button.dataset.copy)); getSelection().removeAllRanges(); getSelection().addRange(r); document.execCommand('copy'); }
  button.textContent = 'Copied';
  window.lastCopied = text;
});
const q = document.querySelector('form.search input[name=q]');
if (q) {
  let timer;
  q.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const params = new URLSearchParams(new FormData(q.form));
      const res = await fetch('/?' + params + '&partial=1');
      if (res.ok) { document.getElementById('results').outerHTML = await res.text(); history.replaceState(null, '', '/?' + params); }
    }, 200);
  });
}
`;
