// A namespace its manager runs (the user's own, or an organisation they are an admin of; every one for a
// registry admin): an organisation's members and roles, the namespace's robots (the secret on the answer
// page once), and the lifecycle policy of the namespace or of one of its repositories, with the quota and
// what the namespace holds. To anyone else the page does not exist. Every rule is AccountManagement's.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { AccountError, isRegistryAdmin, robotDefaultScope, type Organisation, type Role } from '../../auth/index.ts';
import { namespaceOf, type Policy } from '../../storage/index.ts';
import { bytes, html, type Html, when } from '../html.ts';
import { option, registryHost, type PageKit } from './kit.ts';
import { credentialFields, credentialState, linesOf, notice, orRefusal, postedByManager, scopeText, secretOnce, signedIn, type Manager } from './manage.ts';

const ROLES: readonly Role[] = ['read', 'write', 'admin'];

interface Shown {
  status?: number;
  message?: string;
  error?: boolean;
  made?: Html;
  /** The policy scope shown: the namespace, or one of its repositories. */
  scope?: string;
}

/** A number field as the policy's schema wants it; text that is not a number goes on for the schema to refuse by name. */
const numberOrText = (value: string | undefined) => (value === undefined || value.trim() === '' ? undefined : /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value);

/** The policy a form describes; a manager who is no registry admin carries the quota over, as it was. */
function policyFrom(fields: Map<string, string>, admin: boolean, current: Policy | undefined): Record<string, unknown> {
  const policy: Record<string, unknown> = {};
  const immutableTags = linesOf(fields.get('immutableTags'));
  if (immutableTags.length) policy.immutableTags = immutableTags;
  const retention: Record<string, unknown> = { keepLast: numberOrText(fields.get('keepLast')), keepDays: numberOrText(fields.get('keepDays')) };
  const keepTags = linesOf(fields.get('keepTags'));
  if (keepTags.length) retention.keepTags = keepTags;
  const defined = Object.fromEntries(Object.entries(retention).filter(([, v]) => v !== undefined));
  if (Object.keys(defined).length) policy.retention = defined;
  const quota = admin ? numberOrText(fields.get('quotaBytes')) : current?.quotaBytes;
  if (quota !== undefined) policy.quotaBytes = quota;
  return policy;
}

export function namespacePages(router: Router, kit: PageKit): void {
  const { management } = kit.deps;

  const membersSection = (ns: string, org: Organisation, csrf: string) => html`<h2>Members</h2>
<table id="members"><thead><tr><th>User</th><th>Role</th><th></th></tr></thead><tbody>${Object.entries(org.members).map(([user, role]) => html`<tr data-user="${user}"><td>${user}</td>
<td><form method="post" action="/account/namespaces/${ns}/members" class="inline"><input type="hidden" name="_csrf" value="${csrf}"><input type="hidden" name="user" value="${user}">
<select name="role" aria-label="Role of ${user}">${ROLES.map((r) => option(r, r, role))}</select> <button type="submit">Change role</button></form></td>
<td><form method="post" action="/account/namespaces/${ns}/members" class="inline"><input type="hidden" name="_csrf" value="${csrf}"><input type="hidden" name="user" value="${user}"><input type="hidden" name="role" value="none"><button type="submit" aria-label="Remove ${user}">Remove</button></form></td></tr>`)}</tbody></table>
<form method="post" action="/account/namespaces/${ns}/members" id="add-member"><input type="hidden" name="_csrf" value="${csrf}">
<p><label for="member">Add a user</label> <input id="member" name="user" required> <label for="member-role">as</label> <select id="member-role" name="role">${ROLES.map((r) => option(r, r, 'read'))}</select> <button type="submit">Add member</button></p></form>`;

  const robotsSection = async (m: Manager, ns: string) => {
    const robots = await management.robots(m.actor, ns);
    return html`<h2>Robot accounts</h2>
<table id="robots"><thead><tr><th>Log in as</th><th>Scopes</th><th>Created</th><th>Expires</th><th>State</th><th></th></tr></thead><tbody>${robots.map((r) => html`<tr data-robot="${r.name}"><td><code>${r.name}</code></td><td><code>${scopeText(r.scopes)}</code></td><td>${when(r.createdAt)}</td><td>${r.expiresAt ? when(r.expiresAt) : 'never'}</td><td>${credentialState(r)}</td>
<td>${r.revokedAt ? '' : html`<form method="post" action="/account/namespaces/${ns}/robots/${r.name.slice(ns.length + 1)}/delete" class="inline"><input type="hidden" name="_csrf" value="${m.viewer.csrf}"><button type="submit" aria-label="Delete robot ${r.name}">Delete</button></form>`}</td></tr>`)}</tbody></table>
<form method="post" action="/account/namespaces/${ns}/robots" id="new-robot"><input type="hidden" name="_csrf" value="${m.viewer.csrf}">
<p><label for="robot-name">Name</label><br>${ns}+<input id="robot-name" name="name" required></p>${credentialFields(robotDefaultScope(ns))}<p><button type="submit">Create robot</button></p></form>`;
  };

  const policySection = async (m: Manager, ns: string, scope: string) => {
    const { policy, usageBytes } = await management.policyAndUsage(m.actor, scope);
    const admin = isRegistryAdmin(m.actor);
    const nsPolicy = scope === ns ? policy : (await management.policyAndUsage(m.actor, ns)).policy;
    const quota = nsPolicy?.quotaBytes;
    const csrf = html`<input type="hidden" name="_csrf" value="${m.viewer.csrf}"><input type="hidden" name="scope" value="${scope}">`;
    return html`<h2>Policy of ${scope}</h2>
<form method="get" action="/account/namespaces/${ns}" class="inline"><label for="scope-pick">Show the policy of</label> <input id="scope-pick" name="scope" value="${scope}"> <button type="submit">Show</button></form>
<p id="quota">${quota === undefined ? html`No quota: the namespace holds ${bytes(usageBytes)}.` : html`Quota: ${bytes(usageBytes)} used of ${bytes(quota)} (${usageBytes} of ${quota} bytes).`}</p>
<form method="post" action="/account/namespaces/${ns}/policy" id="policy">${csrf}
<p><label for="immutableTags">Immutable tags (patterns with * and ?, one a line)</label><br><textarea id="immutableTags" name="immutableTags" rows="2" cols="40">${(policy?.immutableTags ?? []).join('\n')}</textarea></p>
<fieldset><legend>Retention (the other tags are deleted by the retention run)</legend>
<p><label for="keepLast">Keep the last</label> <input id="keepLast" name="keepLast" inputmode="numeric" size="5" value="${policy?.retention?.keepLast ?? ''}"> tags pushed,
<label for="keepDays">and those of the last</label> <input id="keepDays" name="keepDays" inputmode="numeric" size="5" value="${policy?.retention?.keepDays ?? ''}"> days</p>
<p><label for="keepTags">and those matching (one a line)</label><br><textarea id="keepTags" name="keepTags" rows="2" cols="40">${(policy?.retention?.keepTags ?? []).join('\n')}</textarea></p></fieldset>
${admin && scope === ns ? html`<p><label for="quotaBytes">Quota in bytes (empty: none)</label><br><input id="quotaBytes" name="quotaBytes" inputmode="numeric" value="${policy?.quotaBytes ?? ''}"></p>` : ''}
<p><button type="submit">Save policy</button></p></form>
${policy ? html`<form method="post" action="/account/namespaces/${ns}/policy/remove">${csrf}<button type="submit">Remove the policy of ${scope}</button></form>` : ''}`;
  };

  async function namespacePage(ctx: Context, m: Manager, ns: string, shown: Shown = {}): Promise<void> {
    const scope = shown.scope ?? ns;
    await orRefusal(async () => {
      // Robots first: their listing is refused (and audited) for whoever does not manage the namespace.
      const robots = await robotsSection(m, ns);
      const org = await management.organisation(m.actor, ns).catch((err: unknown) => {
        if (err instanceof AccountError && err.refusal === 'unknown') return undefined;
        throw err;
      });
      const policy = await policySection(m, ns, scope);
      await kit.reply(ctx, shown.status ?? 200, `Namespace ${ns}`, html`<h1>Namespace ${ns}</h1><p><a href="/account">Your account</a></p>
${notice(shown.message, shown.error ?? false)}${shown.made ?? ''}${org ? membersSection(ns, org, m.viewer.csrf) : ''}${robots}${policy}`);
    }, (status) => kit.reply(ctx, status, 'Not found', html`<h1>Not found</h1><p>No namespace by that name that you manage.</p>`));
  }

  /** Runs a posted change of the namespace; a refusal shows the page again with its message. */
  const change = (route: string, path: string, fn: (ctx: Context, m: Manager, ns: string, fields: Map<string, string>) => Promise<Shown>) =>
    router.post(path, async (ctx) => {
      ctx.state.route = route;
      const posted = await postedByManager(kit, ctx);
      if (!posted) return;
      const ns = ctx.params.ns!;
      const m = posted.manager;
      let shown: Shown = {};
      await orRefusal(
        async () => void (shown = await fn(ctx, m, ns, posted.fields)),
        async (status, message) => void (shown = { status, message, error: true, scope: scopeIn(ns, posted.fields.get('scope')) }),
      );
      await namespacePage(ctx, m, ns, shown);
    });

  /** The scope a form names, if it is the namespace or one of its repositories; else the namespace. */
  const scopeIn = (ns: string, scope: string | undefined) => (scope && namespaceOf(scope) === ns ? scope : ns);

  router.get('/account/namespaces/:ns', async (ctx) => {
    ctx.state.route = 'web-namespace';
    const m = await signedIn(kit, ctx);
    if (m) await namespacePage(ctx, m, ctx.params.ns!, { scope: scopeIn(ctx.params.ns!, ctx.query.scope as string | undefined) });
  });

  change('web-members', '/account/namespaces/:ns/members', async (_ctx, m, ns, fields) => {
    const user = (fields.get('user') ?? '').trim().toLowerCase();
    const role = fields.get('role');
    await management.setMember(m.actor, ns, user, role === 'none' ? undefined : (role as Role));
    return { message: role === 'none' ? `${user} removed.` : `${user} is now ${role}.` };
  });

  change('web-robots', '/account/namespaces/:ns/robots', async (ctx, m, ns, fields) => {
    const { robot, secret } = await management.createRobot(m.actor, ns, { name: (fields.get('name') ?? '').trim(), scopes: linesOf(fields.get('scopes')), expiresIn: fields.get('expiresIn') });
    return { status: 201, made: secretOnce('robot secret', robot.name, secret, registryHost(kit, ctx)) };
  });

  change('web-robot-delete', '/account/namespaces/:ns/robots/:name/delete', async (ctx, m, ns) => {
    const full = await management.deleteRobot(m.actor, ns, ctx.params.name!);
    return { message: `Robot ${full} deleted: it no longer logs in.` };
  });

  change('web-policy', '/account/namespaces/:ns/policy', async (_ctx, m, ns, fields) => {
    const scope = scopeIn(ns, fields.get('scope'));
    const { policy } = await management.policyAndUsage(m.actor, scope);
    await management.setPolicy(m.actor, scope, policyFrom(fields, isRegistryAdmin(m.actor), policy));
    return { message: `Policy of ${scope} saved.`, scope };
  });

  change('web-policy', '/account/namespaces/:ns/policy/remove', async (_ctx, m, ns, fields) => {
    const scope = scopeIn(ns, fields.get('scope'));
    await management.removePolicy(m.actor, scope);
    return { message: `Policy of ${scope} removed.`, scope };
  });
}
