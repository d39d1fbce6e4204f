// What pages load besides themselves: logos and social cards (through their repository's visibility), the
// style sheet, the small script, and the icon browsers ask for on every page.
import type Router from '@koa/router';
import { repository } from '../catalog.ts';
import { FAVICON_SVG, SCRIPT, STYLE } from '../html.ts';
import { LOGO_FILE_RE } from '../images.ts';
import type { PageKit } from './kit.ts';

export function assetPages(router: Router, kit: PageKit): void {
  const { storage, auth, logos } = kit.deps;

  router.get('/images/{*path}', async (ctx) => {
    ctx.state.route = 'web-image';
    const path = ctx.params.path ?? '';
    const slash = path.lastIndexOf('/');
    const file = path.slice(slash + 1);
    const hex = LOGO_FILE_RE.exec(file)?.[1];
    // Through the repository that shows it only: a private repository's logo, asked for by someone who may
    // not pull it, gets the very answer a repository that does not exist gets.
    const entry = hex && slash > 0 ? await repository(storage, await kit.visibility(ctx), path.slice(0, slash)) : undefined;
    const content = entry && entry.logo === hex ? await logos.read(file) : undefined;
    if (!entry || !content) return kit.notFound(ctx);
    const shared = !auth || (auth.mode !== 'private' && entry.visibility === 'public');
    ctx.type = file.endsWith('.webp') ? 'image/webp' : 'image/png';
    ctx.set('Cache-Control', shared ? 'public, max-age=3600' : 'private, no-cache');
    ctx.body = content;
  });

  router.get('/card/{*name}', async (ctx) => {
    ctx.state.route = 'web-card';
    const entry = await repository(storage, await kit.visibility(ctx), ctx.params.name ?? '');
    if (!entry) return kit.notFound(ctx);
    ctx.type = 'image/png';
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = await logos.card(entry);
  });

  const asset = (path: string, type: string, body: string) =>
    router.get(path, (ctx) => {
      ctx.type = type;
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.body = body;
    });
  asset('/static/berth.css', 'text/css', STYLE);
  asset('/static/berth.js', 'application/javascript', SCRIPT);
  // Pages name the icon; /favicon.ico is where browsers and feed readers look when a page does not.
  asset('/static/favicon.svg', 'image/svg+xml', FAVICON_SVG);
  asset('/favicon.ico', 'image/svg+xml', FAVICON_SVG);
}
