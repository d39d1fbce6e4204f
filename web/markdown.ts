// README Markdown → HTML that is safe to put on a page. marked passes raw HTML through (Markdown allows
// it), so its output is always sanitised by an allow-list: no scripts, no event handlers, no styles, no
// javascript: or data: links.
import type { Marked } from 'marked';
import type sanitize from 'sanitize-html';

// Loaded by the first README shown: a process that never renders one does not carry the parsers.
let loaded: Promise<{ marked: Marked; sanitizeHtml: typeof sanitize }> | undefined;
const load = () =>
  (loaded ??= Promise.all([import('marked'), import('sanitize-html')]).then(([m, s]) => ({
    marked: new m.Marked({ gfm: true, async: false }),
    sanitizeHtml: s.default,
  })));

const options = (sanitizeHtml: typeof sanitize): sanitize.IOptions => ({
  allowedTags: [...sanitizeHtml.defaults.allowedTags, 'img', 'h1', 'h2', 'del'],
  allowedAttributes: {
    a: ['href', 'title'],
    img: ['src', 'alt', 'title', 'width', 'height'],
    code: ['class'],
    th: ['align'],
    td: ['align'],
  },
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesByTag: { img: ['http', 'https'] },
  allowProtocolRelative: false,
  transformTags: {
    a: sanitizeHtml.simpleTransform('a', { rel: 'nofollow noopener noreferrer' }),
  },
  allowedClasses: { code: [/^language-[\w-]+$/] },
});

export async function renderMarkdown(markdown: string): Promise<string> {
  const { marked, sanitizeHtml } = await load();
  const allowed = options(sanitizeHtml);
  return sanitizeHtml(marked.parse(markdown) as string, { ...allowed, allowedAttributes: { ...allowed.allowedAttributes, a: ['href', 'title', 'rel'] } });
}
