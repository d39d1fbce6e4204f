// The web room's front door: the catalog pages, the JSON API and docker search, on the server's router.
import type Router from '@koa/router';
import type { AuthService } from '../auth/index.ts';
import type { RateCounter, Storage } from '../storage/index.ts';
import { apiRoutes } from './api.ts';
import type { ReadBody } from './forms.ts';
import { pageRoutes } from './pages.ts';
import { Sessions } from './session.ts';

export interface WebConfig {
  loginFailuresPerAccount: number;
  loginFailureWindowSeconds: number;
}

export interface WebDeps {
  config: WebConfig;
  storage: Storage;
  /** Undefined in open mode: everyone sees everything, and nobody signs in. */
  auth?: AuthService;
  counter: RateCounter;
  /** Reads a request body up to a limit (413 above it). */
  readBody: ReadBody;
  sessions: Sessions;
}

export function webRoutes(router: Router, deps: Omit<WebDeps, 'sessions'>): void {
  const full: WebDeps = { ...deps, sessions: new Sessions(deps.storage.driver, deps.auth) };
  apiRoutes(router, full);
  pageRoutes(router, full);
}

export { renderMarkdown } from './markdown.ts';
export { storeLogo, socialCard, LogoError, MAX_LOGO_PIXELS } from './images.ts';
