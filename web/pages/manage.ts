// What the account pages share: the signed-in person as the service layer's actor, the answer to a
// refusal of AccountManagement (the same refusals the admin API answers), the list of a credential's
// facts, the secret shown once, and the overview at /account (what the person manages, and for admins the
// last lifecycle runs). Every rule is AccountManagement's; these pages only draw and read forms.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { AccountError, isAccountName, isRegistryAdmin, type Actor, type ScopeGrant } from '../../auth/index.ts';
import { PolicyError, type JobName } from '../../storage/index.ts';
import { html, type Html, when } from '../html.ts';
import type { Viewer } from '../session.ts';
import type { PageKit } from './kit.ts';

/** A signed-in person on an account page: who they are and their actor for the service. */
export interface Manager {
  viewer: Viewer & { user: string };
  actor: Actor;
}

export function managerOf(ctx: Context, viewer: Viewer): Manager | undefined {
  if (!viewer.user || viewer.principal.kind !== 'user') return undefined;
  return { viewer: viewer as Manager['viewer'], actor: { kind: 'principal', principal: viewer.principal, via: 'web', address: ctx.ip } };
}

/** The signed-in person, or undefined once the visitor was sent to sign in (or told there are no accounts). */
export async function signedIn(kit: PageKit, ctx: Context): Promise<Manager | undefined> {
  ctx.set('Cache-Control', 'no-store');
  if (!kit.deps.auth) {
    await kit.reply(ctx, 404, 'Not found', html`<h1>Not found</h1><p>This registry runs in open mode: it has no accounts.</p>`);
    return undefined;
  }
  const manager = managerOf(ctx, await kit.deps.sessions.viewer(ctx));
  if (!manager) ctx.redirect('/signin');
  return manager;
}

/** A posted account form: its CSRF token checked (403 otherwise), from a signed-in person. */
export async function postedByManager(kit: PageKit, ctx: Context): Promise<{ manager: Manager; fields: Map<string, string> } | undefined> {
  ctx.set('Cache-Control', 'no-store');
  const posted = await kit.postedForm(ctx);
  if (!posted) return undefined;
  const manager = kit.deps.auth && managerOf(ctx, posted.viewer);
  if (!manager) {
    await kit.reply(ctx, 404, 'Not found', html`<h1>Not found</h1><p>Sign in to manage your account.</p>`);
    return undefined;
  }
  return { manager, fields: posted.form.fields };
}

/** A refusal of the service as a page's status and message; undefined for anything else (the server's fault). */
export function refusalOf(err: unknown): { status: number; message: string } | undefined {
  if (err instanceof AccountError) {
    const status = { invalid: 400, reserved: 409, taken: 409, unknown: 404, denied: 403 }[err.refusal];
    return { status, message: err.message };
  }
  if (err instanceof PolicyError) return { status: err.kind === 'none' ? 404 : 400, message: err.message };
  return undefined;
}

/** Runs a change; a refusal of the service is drawn by `refused` (with its status), anything else goes on up. */
export async function orRefusal(change: () => Promise<void>, refused: (status: number, message: string) => Promise<void>): Promise<void> {
  try {
    await change();
  } catch (err) {
    const refusal = refusalOf(err);
    if (!refusal) throw err;
    await refused(refusal.status, refusal.message);
  }
}

export const notice = (message: string | undefined, error: boolean): Html | '' =>
  message ? html`<p class="${error ? 'error' : 'notice'}" role="${error ? 'alert' : 'status'}">${message}</p>` : '';

/** The words of a text field (scopes, tag patterns; neither holds a space): one a line or apart, at most 100. */
export function linesOf(text: string | undefined): string[] {
  return (text ?? '').split(/\s+/).map((s) => s.trim()).filter(Boolean).slice(0, 100);
}

export const scopeText = (scopes: ScopeGrant[]) => scopes.map((s) => `repository:${s.pattern}:${s.actions.join(',')}`).join(' ');

export function credentialState(c: { revokedAt?: string; expiresAt?: string }): string {
  if (c.revokedAt) return 'revoked';
  if (c.expiresAt && Date.parse(c.expiresAt) <= Date.now()) return 'expired';
  return 'active';
}

/** The fields a token or robot is made with: scopes (one a line) and a lifetime. */
export function credentialFields(defaultScope: string): Html {
  return html`<p><label for="scopes">Scopes, one a line (empty: <code>${defaultScope}</code>)</label><br><textarea id="scopes" name="scopes" rows="3" cols="60" placeholder="${defaultScope}"></textarea></p>
<p><label for="expiresIn">Expires in</label><br><select id="expiresIn" name="expiresIn"><option value="30d">30 days</option><option value="90d" selected>90 days</option><option value="365d">a year</option><option value="never">never</option></select></p>`;
}

/** A new secret: on this page once, never again. */
export function secretOnce(what: string, username: string, secret: string, host: string): Html {
  return html`<section class="secret" aria-labelledby="secret-title"><h2 id="secret-title">Your new ${what}</h2>
<p>Copy it now: it is shown this once and cannot be read again.</p>
<div class="pull"><code id="secret">${secret}</code><button type="button" data-copy="secret" aria-label="Copy the secret">Copy</button></div>
<p>Log in with it: <code>docker login ${host} -u ${username}</code>, then paste it as the password.</p></section>`;
}

/** Organisations listed on one account page (an admin manages all of them). */
const ORGANISATIONS_PAGE = 100;

const JOBS: Array<{ job: JobName; title: string }> = [
  { job: 'garbage-collection', title: 'Garbage collection' },
  { job: 'retention', title: 'Retention' },
];

/** The overview: the person's tokens, the namespaces they manage, and for admins the last lifecycle runs. */
export function overviewPage(router: Router, kit: PageKit): void {
  const { storage, management } = kit.deps;

  router.get('/account', async (ctx) => {
    ctx.state.route = 'web-account';
    const manager = await signedIn(kit, ctx);
    if (!manager) return;
    const { actor, viewer } = manager;
    // An admin manages every organisation: a page of them at a time, after ?last=.
    const last = typeof ctx.query.last === 'string' && isAccountName(ctx.query.last) ? ctx.query.last : undefined;
    const { organisations, next } = await management.managedOrganisations(actor, ORGANISATIONS_PAGE, last);
    const namespaces = [...(last === undefined ? [viewer.user] : []), ...organisations.map((o) => o.name).filter((n) => n !== viewer.user)];
    const admin = isRegistryAdmin(actor);
    const runs = admin ? await Promise.all(JOBS.map(async (j) => ({ ...j, last: await storage.jobs.last(j.job) }))) : [];
    await kit.reply(ctx, 200, 'Your account', html`<h1>Your account</h1>
<p><a href="/account/tokens">Personal access tokens</a>: for <code>docker login</code> and scripts.</p>
<h2>Namespaces you manage</h2><ul class="namespaces">${namespaces.map((n) => html`<li><a href="/account/namespaces/${n}">${n}</a>${n === viewer.user ? ' (yours)' : ' (organisation)'}</li>`)}</ul>
${next ? html`<p><a rel="next" href="/account?last=${next}">More organisations</a></p>` : ''}
${admin ? html`<h2>Lifecycle runs</h2><table id="runs"><thead><tr><th>Job</th><th>Last finished</th><th>By</th><th>What it did</th></tr></thead><tbody>${runs.map(
      (r) => html`<tr><td>${r.title}</td><td>${when(r.last?.finishedAt)}</td><td>${r.last?.by ?? ''}</td><td><code>${r.last?.summary ? JSON.stringify(r.last.summary) : 'no run yet'}</code></td></tr>`,
    )}</tbody></table>
<p>Replication rules and their last runs: <a href="/admin/replication">replication</a>.</p>` : ''}`);
  });
}
