// The JSON API: /api/v1 (search and repositories, as the pages show them) and /v1/search in the shape
// Docker Hub and Quay answer, so `docker search HOST/term` lists Berth's repositories.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { isOfficial } from '../storage/index.ts';
import { details, repository, search, searchParams, summary, tagPage, tagParams } from './catalog.ts';
import type { WebDeps } from './index.ts';
import { Visibility } from './session.ts';

export function apiRoutes(router: Router, deps: WebDeps): void {
  const visibilityOf = async (ctx: Context) => new Visibility(deps.auth, await deps.sessions.viewer(ctx));

  router.get('/api/v1/search', async (ctx) => {
    ctx.state.route = 'api-search';
    const result = await search(deps.storage, await visibilityOf(ctx), searchParams(ctx.query));
    ctx.body = { ...result, results: result.results.map((e) => summary(e, deps.mirroredFrom)) };
  });

  router.get('/api/v1/repositories/{*name}', async (ctx) => {
    ctx.state.route = 'api-repository';
    const entry = await repository(deps.storage, await visibilityOf(ctx), ctx.params.name ?? '');
    if (!entry) {
      ctx.status = 404;
      ctx.body = { error: 'repository not found' };
      return;
    }
    const params = tagParams(ctx.query);
    ctx.body = details(entry, await tagPage(deps.storage, entry.name, params), params, deps.mirroredFrom);
  });

  router.get('/v1/search', async (ctx) => {
    ctx.state.route = 'v1-search';
    const params = searchParams(ctx.query);
    if (ctx.query.n === undefined) params.n = 25;
    const result = await search(deps.storage, await visibilityOf(ctx), params);
    ctx.body = {
      num_results: result.total,
      num_pages: result.pages,
      page: result.page,
      page_size: result.n,
      query: params.q,
      results: result.results.map((e) => ({
        name: e.name,
        description: e.description,
        star_count: 0,
        pull_count: e.pulls,
        is_official: isOfficial(e.name),
        is_automated: false,
        is_trusted: false,
      })),
    };
  });
}
