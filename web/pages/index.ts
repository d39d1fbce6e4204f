// The pages, one file per family, on the server's router. Server-rendered; a form works without
// JavaScript; every post carries the CSRF token. Pages read storage only through its services.
import type Router from '@koa/router';
import type { WebDeps } from '../index.ts';
import { accountPages } from './account.ts';
import { imagePages } from './image.ts';
import { oidcPages } from './oidc.ts';
import { assetPages } from './assets.ts';
import { pageKit } from './kit.ts';
import { repositoryPages } from './repository.ts';
import { searchPages } from './search.ts';
import { settingsPages } from './settings.ts';
import { replicationPages } from './replication.ts';
import { overviewPage } from './manage.ts';
import { namespacePages } from './namespaces.ts';
import { tokenPages } from './tokens.ts';

export function pageRoutes(router: Router, deps: WebDeps): void {
  const kit = pageKit(deps);
  searchPages(router, kit);
  // Before the repository page: /r/NAME/tags/TAG would otherwise be read as a repository named so.
  imagePages(router, kit);
  repositoryPages(router, kit);
  accountPages(router, kit);
  oidcPages(router, kit);
  settingsPages(router, kit);
  replicationPages(router, kit);
  overviewPage(router, kit);
  tokenPages(router, kit);
  namespacePages(router, kit);
  assetPages(router, kit);
}
