// The web room's front door: the catalog pages, the JSON API and docker search, on the server's router.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { AccountManagement, type Authenticated, type AuthService } from '../auth/index.ts';
import type { Storage } from '../storage/index.ts';
import type { Webhooks } from '../events/index.ts';
import type { Replication } from '../replication/index.ts';
import { adminRoutes, type GcSchedule } from './admin.ts';
import { webhookRoutes } from './webhooks.ts';
import { replicationRoutes } from './replication.ts';
import { accountRoutes } from './accounts-api.ts';
import { openApiRoutes } from './openapi.ts';
import { apiRoutes } from './api.ts';
import type { ReadBody } from './forms.ts';
import { Logos } from './images.ts';
import { pageRoutes } from './pages/index.ts';
import { Sessions } from './session.ts';

/**
 * Checks credentials with the server's failed-login limits (per account and per address, shared by every
 * process): resolves to who they prove, or rejects with an error whose `code` is UNAUTHORIZED or
 * TOO_MANY_REQUESTS.
 */
export interface Login {
  login(ctx: Context, username: string, password: string): Promise<Authenticated>;
}

export interface WebDeps {
  storage: Storage;
  /** Undefined in open mode: everyone sees everything, and nobody signs in. */
  auth?: AuthService;
  /** Present whenever auth is. */
  login?: Login;
  /** Reads a request body up to a limit (413 above it). */
  readBody: ReadBody;
  sessions: Sessions;
  /** Logos and social cards in storage. */
  logos: Logos;
  /** BERTH_PUBLIC_URL: what link previews and cards name; the request's Host never is. */
  publicUrl?: string;
  /** BERTH_MAX_MANIFEST_BYTES: an image page reads no manifest or config larger than this. */
  maxManifestBytes: number;
  /** Webhook endpoints (the admin API manages them). */
  webhooks: Webhooks;
  /** Replication rules and their runs (the admin API and page manage them). */
  replication: Replication;
  /** The server's garbage collection settings, which the admin API shows and runs with. */
  gcSchedule: GcSchedule;
  /** The OpenID provider's name on the sign-in page (BERTH_OIDC_NAME), when one is configured. */
  oidcName?: string;
  /** What a repository is a pull-through copy of (`registry-1.docker.io/library/alpine`), when a mirror holds it. */
  mirroredFrom?: (name: string) => string | undefined;
  /** Who may manage which members, tokens, robots and policies, and the managing: the API's and the pages' one service. */
  management: AccountManagement;
}

export function webRoutes(router: Router, deps: Omit<WebDeps, 'sessions' | 'logos' | 'management'>): void {
  const publicHost = deps.publicUrl && new URL(deps.publicUrl).host;
  const full: WebDeps = { ...deps, sessions: new Sessions(deps.storage.driver, deps.auth), logos: new Logos(deps.storage.driver, publicHost),
    management: new AccountManagement(deps.auth?.accounts, deps.auth?.audit, deps.storage.policies, deps.storage.quotas),
  };
  apiRoutes(router, full);
  adminRoutes(router, full, deps.gcSchedule);
  webhookRoutes(router, full);
  replicationRoutes(router, full);
  accountRoutes(router, full);
  openApiRoutes(router);
  pageRoutes(router, full);
}

export { renderMarkdown } from './markdown.ts';
export { expirySweep, type ExpiryReport } from './expiry.ts';
export { refuseCrossSite, securityHeaders, SECURITY_HEADERS } from './browser.ts';
export { storeLogo, socialCard, LogoError, MAX_LOGO_PIXELS } from './images.ts';
