// The admin API (/api/v1) against a real Berth in private mode, with an admin (chief) and users who are
// not (alice, bob): who may do what, that bad input is a 4xx in the API's error shape, that secrets are
// shown once, and that the API, the CLI and the registry see the same accounts. The OpenAPI document is
// compared with the routes the router holds.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createApp } from '../../server/app.ts';
import { loadConfig } from '../../server/config.ts';
import { OPENAPI_DOCUMENT } from '../../web/openapi.ts';
import { addUser, auditOf, AuthorizedRegistry, bearer, cli, tokenFor, tokenRequest } from '../helpers/auth.ts';
import { useBerth } from '../helpers/berth.ts';
import { requestsSince } from '../helpers/berth-requests.ts';
import { waitFor } from '../helpers/wait.ts';
import type { RawResponse, Registry } from '../helpers/registry.ts';

const JSON_TYPE = { 'Content-Type': 'application/json' };

describe('admin API', function () {
  describe('the OpenAPI document', function () {
    it('names every route registered under /api/v1 with its methods, and no route that is not', async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'berth-openapi-'));
      try {
        const berth = await createApp(loadConfig({ BERTH_DATA: dataDir, BERTH_MODE: 'private', BERTH_LISTEN: '127.0.0.1:0' }), pino({ level: 'silent' }));
        const registered = new Set<string>();
        for (const layer of berth.router.stack) {
          if (typeof layer.path !== 'string' || !layer.path.startsWith('/api/v1/')) continue;
          // Koa's `:id` and `{*name}` are OpenAPI's `{id}` and `{name}`; HEAD comes with every GET.
          const path = layer.path.replace(/:(\w+)/g, '{$1}').replace(/\{\*(\w+)\}/g, '{$1}');
          for (const method of layer.methods) if (method !== 'HEAD') registered.add(`${method} ${path}`);
        }
        const documented = new Set(Object.entries(OPENAPI_DOCUMENT.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)));
        expect(registered.size).to.be.greaterThan(20);
        expect([...registered].filter((r) => !documented.has(r)), 'registered but not documented').to.deep.equal([]);
        expect([...documented].filter((d) => !registered.has(d)), 'documented but not registered').to.deep.equal([]);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });

  describe('in private mode', function () {
    const served = useBerth({ env: { BERTH_MODE: 'private', BERTH_WEBHOOK_ALLOW: '127.0.0.1' } });
    let chief: AuthorizedRegistry, alice: AuthorizedRegistry, bob: AuthorizedRegistry;

    const as = async (name: string, password: string) => new AuthorizedRegistry(served.berth.url, bearer(await tokenFor(served.registry, [], [name, password])));
    const send = (registry: Registry, method: string, path: string, body?: unknown) =>
      registry.request(method, path, body === undefined ? {} : { body: JSON.stringify(body), headers: JSON_TYPE });
    /** A refusal in the API's error shape, with the status and code expected. */
    const refused = (res: RawResponse, status: number, code?: string) => {
      expect(res.status, res.text).to.equal(status);
      expect(res.json.errors).to.be.an('array').with.lengthOf(1);
      expect(res.json.errors[0]).to.have.keys('code', 'message', 'detail');
      if (code) expect(res.json.errors[0].code).to.equal(code);
    };
    const logsIn = async (user: string, password: string) => (await tokenRequest(served.registry, [], [user, password])).status === 200;

    before(async () => {
      const { berth } = served;
      await addUser(berth, 'chief', 'chief-password-1', true);
      await addUser(berth, 'alice', 'alice-password-1');
      await addUser(berth, 'bob', 'bob-password-1');
      chief = await as('chief', 'chief-password-1');
      alice = await as('alice', 'alice-password-1');
      bob = await as('bob', 'bob-password-1');
    });

    it('serves its OpenAPI 3.1 document', async () => {
      const res = await served.registry.request('GET', '/api/v1/openapi.json');
      expect(res.status).to.equal(200);
      expect(res.json.openapi).to.equal('3.1.0');
      expect(res.json.paths).to.have.property('/api/v1/admin/users');
    });

    it('lets only an admin list, create and remove users; a removed user\'s name is retired and their access gone', async () => {
      refused(await served.registry.request('GET', '/api/v1/admin/users'), 401, 'UNAUTHORIZED');
      refused(await alice.request('GET', '/api/v1/admin/users'), 403, 'DENIED');
      refused(await send(alice, 'POST', '/api/v1/admin/users', { name: 'mallory', password: 'mallory-password-1', admin: true }), 403);

      const made = await send(chief, 'POST', '/api/v1/admin/users', { name: 'dora', password: 'dora-password-1' });
      expect(made.status, made.text).to.equal(201);
      expect(made.json).to.deep.include({ name: 'dora', admin: false });
      expect(await logsIn('dora', 'dora-password-1')).to.equal(true);
      const listed = await chief.request('GET', '/api/v1/admin/users');
      expect(listed.json.users.map((u: any) => u.name)).to.include.members(['alice', 'bob', 'chief', 'dora']);
      expect(listed.text).not.to.match(/passwordHash|epoch/);

      // A page at a time: n users, and a Link to the next page until the last; every user once.
      const seen: string[] = [];
      let next: string | undefined = '/api/v1/admin/users?n=2';
      for (let pages = 0; next !== undefined; pages++) {
        expect(pages, 'pages to list four users two at a time').to.be.below(3);
        const page = await chief.request('GET', next);
        expect(page.status, page.text).to.equal(200);
        expect(page.json.users.length).to.be.within(1, 2);
        seen.push(...page.json.users.map((u: any) => u.name));
        next = page.headers.link?.match(/^<([^>]+)>; rel="next"$/)?.[1];
      }
      expect(seen.sort()).to.deep.equal((listed.json.users as any[]).map((u) => u.name).sort());
      expect(seen).to.have.length(4);
      refused(await chief.request('GET', '/api/v1/admin/users?n=0'), 400, 'INVALID');
      refused(await chief.request('GET', '/api/v1/admin/users?n=abc'), 400, 'INVALID');
      refused(await chief.request('GET', '/api/v1/admin/users?n=1001'), 400, 'INVALID');
      refused(await chief.request('GET', '/api/v1/admin/users?last=../etc'), 400, 'INVALID');

      refused(await send(chief, 'POST', '/api/v1/admin/users', { name: 'dora', password: 'dora-password-2' }), 409, 'TAKEN');
      refused(await send(chief, 'POST', '/api/v1/admin/users', { name: 'Not A Name!', password: 'x-password-123' }), 400, 'INVALID');
      refused(await send(chief, 'POST', '/api/v1/admin/users', { name: 'erin', password: 42 }), 400, 'INVALID');
      refused(await chief.request('POST', '/api/v1/admin/users', { body: 'name=erin', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }), 415);
      refused(await chief.request('POST', '/api/v1/admin/users', { body: '{"name":', headers: JSON_TYPE }), 400);
      refused(await chief.request('POST', '/api/v1/admin/users', { body: JSON.stringify({ name: 'x'.repeat(70_000) }), headers: JSON_TYPE }), 413);

      const dora = await as('dora', 'dora-password-1');
      const pat = await send(dora, 'POST', '/api/v1/users/dora/tokens', { description: 'ci' });
      expect(pat.status, pat.text).to.equal(201);
      const removed = await chief.request('DELETE', '/api/v1/admin/users/dora');
      expect(removed.status, removed.text).to.equal(200);
      expect(removed.json).to.deep.include({ name: 'dora', tokens: 1 });
      expect(await logsIn('dora', 'dora-password-1')).to.equal(false);
      expect(await logsIn('dora', pat.json.secret)).to.equal(false);
      const claim = JSON.parse((await served.berth.storage.getContent('/auth/claims/dora.json'))!.toString());
      expect(claim.retiredAt, 'the name is retired, as by berth user rm').to.be.a('string');
      refused(await chief.request('DELETE', '/api/v1/admin/users/dora'), 404, 'UNKNOWN');
    });

    it('lets an admin create organisations and their admins manage members, which the CLI sees', async () => {
      refused(await send(alice, 'POST', '/api/v1/organisations', { name: 'acme' }), 403);
      const made = await send(chief, 'POST', '/api/v1/organisations', { name: 'acme', owner: 'alice' });
      expect(made.status, made.text).to.equal(201);
      expect(made.json.members).to.deep.equal({ alice: 'admin' });
      refused(await send(chief, 'POST', '/api/v1/organisations', { name: 'acme' }), 409);
      refused(await send(chief, 'POST', '/api/v1/organisations', { name: 'nobodys', owner: 'ghost' }), 404);

      expect((await alice.request('GET', '/api/v1/organisations')).json.organisations.map((o: any) => o.name)).to.deep.equal(['acme']);
      // An admin manages them all, a page at a time with a Link to the next.
      expect((await send(chief, 'POST', '/api/v1/organisations', { name: 'acme2' })).status).to.equal(201);
      const firstPage = await chief.request('GET', '/api/v1/organisations?n=1');
      expect(firstPage.json.organisations.map((o: any) => o.name)).to.deep.equal(['acme']);
      const nextPage = firstPage.headers.link?.match(/^<([^>]+)>; rel="next"$/)?.[1];
      expect(nextPage).to.equal('/api/v1/organisations?n=1&last=acme');
      const secondPage = await chief.request('GET', nextPage!);
      expect(secondPage.json.organisations.map((o: any) => o.name)).to.include('acme2');
      refused(await chief.request('GET', '/api/v1/organisations?n=1001'), 400, 'INVALID');
      refused(await chief.request('GET', '/api/v1/organisations?last=../etc'), 400, 'INVALID');
      expect((await bob.request('GET', '/api/v1/organisations')).json.organisations).to.deep.equal([]);
      refused(await bob.request('GET', '/api/v1/organisations/acme'), 404);

      const set = await send(alice, 'PUT', '/api/v1/organisations/acme/members/bob', { role: 'write' });
      expect(set.status, set.text).to.equal(200);
      expect(set.json.members).to.deep.equal({ alice: 'admin', bob: 'write' });
      expect(await cli(served.berth, ['org', 'show', 'acme'])).to.equal('alice admin\nbob write\n');
      refused(await send(alice, 'PUT', '/api/v1/organisations/acme/members/bob', { role: 'owner' }), 400, 'INVALID');
      refused(await send(alice, 'PUT', '/api/v1/organisations/acme/members/bob', {}), 400);
      refused(await send(alice, 'PUT', '/api/v1/organisations/acme/members/ghost', { role: 'read' }), 404);
      refused(await send(bob, 'PUT', '/api/v1/organisations/acme/members/bob', { role: 'admin' }), 404);

      expect((await alice.request('DELETE', '/api/v1/organisations/acme/members/bob')).json.members).to.deep.equal({ alice: 'admin' });
      expect((await chief.request('GET', '/api/v1/organisations/acme')).json.members).to.deep.equal({ alice: 'admin' });
    });

    it('creates personal access tokens for the user or an admin, shows the secret once, lists without it, revokes', async () => {
      const made = await send(alice, 'POST', '/api/v1/users/alice/tokens', { description: 'laptop', scopes: ['repository:alice/*:pull'], expiresIn: '30d' });
      expect(made.status, made.text).to.equal(201);
      expect(made.json.secret).to.match(/^berth_pat\./);
      expect(made.json).not.to.have.property('secretHash');
      expect(await logsIn('alice', made.json.secret)).to.equal(true);

      const listed = await alice.request('GET', '/api/v1/users/alice/tokens');
      expect(listed.json.tokens.map((t: any) => t.id)).to.deep.equal([made.json.id]);
      expect(listed.text).not.to.match(/secret/i);
      expect(await cli(served.berth, ['token', 'list', 'alice'])).to.contain(made.json.id);

      refused(await bob.request('GET', '/api/v1/users/alice/tokens'), 403);
      refused(await send(bob, 'POST', '/api/v1/users/alice/tokens', {}), 403);
      refused(await bob.request('DELETE', `/api/v1/users/alice/tokens/${made.json.id}`), 403);
      refused(await bob.request('DELETE', `/api/v1/users/bob/tokens/${made.json.id}`), 404);
      refused(await send(alice, 'POST', '/api/v1/users/alice/tokens', { scopes: ['everything'] }), 400, 'INVALID');
      refused(await send(alice, 'POST', '/api/v1/users/alice/tokens', { expiresIn: 'soon' }), 400, 'INVALID');
      refused(await send(alice, 'POST', '/api/v1/users/alice/tokens', { description: 'x'.repeat(301) }), 400);
      expect((await send(chief, 'POST', '/api/v1/users/bob/tokens', { expiresIn: 'never' })).status).to.equal(201);

      expect((await alice.request('DELETE', `/api/v1/users/alice/tokens/${made.json.id}`)).status).to.equal(200);
      expect(await logsIn('alice', made.json.secret)).to.equal(false);
    });

    it('creates robots for a namespace\'s managers, shows the secret once, lists without it, revokes', async () => {
      await send(chief, 'POST', '/api/v1/organisations', { name: 'robotics', owner: 'alice' });
      const made = await send(alice, 'POST', '/api/v1/namespaces/robotics/robots', { name: 'ci', scopes: ['repository:robotics/*:pull,push'] });
      expect(made.status, made.text).to.equal(201);
      expect(made.json.name).to.equal('robotics+ci');
      expect(await logsIn('robotics+ci', made.json.secret)).to.equal(true);
      const listed = await alice.request('GET', '/api/v1/namespaces/robotics/robots');
      expect(listed.json.robots.map((r: any) => r.name)).to.deep.equal(['robotics+ci']);
      expect(listed.text).not.to.match(/secret/i);

      refused(await bob.request('GET', '/api/v1/namespaces/robotics/robots'), 404);
      refused(await send(bob, 'POST', '/api/v1/namespaces/robotics/robots', { name: 'evil' }), 404);
      refused(await send(alice, 'POST', '/api/v1/namespaces/robotics/robots', { name: 'ci' }), 409);
      refused(await send(alice, 'POST', '/api/v1/namespaces/robotics/robots', { name: 'no good' }), 400);
      refused(await bob.request('DELETE', '/api/v1/namespaces/robotics/robots/ci'), 404);

      expect((await alice.request('DELETE', '/api/v1/namespaces/robotics/robots/ci')).status).to.equal(200);
      expect(await logsIn('robotics+ci', made.json.secret)).to.equal(false);
      refused(await alice.request('DELETE', '/api/v1/namespaces/robotics/robots/gone'), 404);
    });

    it('sets a repository\'s visibility and description for who may delete it', async () => {
      const pusher = new AuthorizedRegistry(served.berth.url, bearer(await tokenFor(served.registry, ['repository:alice/app:pull,push'], ['alice', 'alice-password-1'])));
      await pusher.pushImage('alice/app', 'v1');
      expect((await bob.request('GET', '/api/v1/repositories/alice/app')).status, 'private: bob does not see it').to.equal(404);

      const set = await send(alice, 'PATCH', '/api/v1/repositories/alice/app', { visibility: 'public', description: '  the   app\n' });
      expect(set.status, set.text).to.equal(200);
      expect(set.json).to.deep.equal({ name: 'alice/app', visibility: 'public', description: 'the app' });
      const seen = await bob.request('GET', '/api/v1/repositories/alice/app');
      expect(seen.status, 'public now: bob sees it').to.equal(200);
      expect(seen.json.description).to.equal('the app');

      refused(await send(bob, 'PATCH', '/api/v1/repositories/alice/app', { visibility: 'private' }), 404);
      refused(await send(alice, 'PATCH', '/api/v1/repositories/alice/app', { visibility: 'secret' }), 400, 'INVALID');
      refused(await send(alice, 'PATCH', '/api/v1/repositories/alice/app', { description: 7 }), 400);
      refused(await send(chief, 'PATCH', '/api/v1/repositories/Bad..Name', { description: 'x' }), 400, 'NAME_INVALID');
      refused(await send(alice, 'PATCH', '/api/v1/repositories/alice/not-pushed', { description: 'x' }), 404);
      expect((await send(chief, 'PATCH', '/api/v1/repositories/alice/not-pushed', { visibility: 'private' })).status, 'an admin may set it before the first push').to.equal(200);
      expect((await send(chief, 'PATCH', '/api/v1/repositories/alice/app', { visibility: 'private' })).json.visibility).to.equal('private');
      expect((await bob.request('GET', '/api/v1/repositories/alice/app')).status).to.equal(404);
    });

    it('lets admins get, set and remove policies, validated as the CLI validates them', async () => {
      refused(await send(alice, 'PUT', '/api/v1/policies/acme', { quotaBytes: 1000 }), 403);
      // The namespace's managers set its immutable tags and retention (the service's rule, as on the pages).
      const managed = await send(alice, 'PUT', '/api/v1/policies/acme/app', { immutableTags: ['v*'] });
      expect(managed.status, managed.text).to.equal(200);
      refused(await send(bob, 'PUT', '/api/v1/policies/acme/app', { immutableTags: [] }), 404);
      refused(await bob.request('GET', '/api/v1/policies/acme/app'), 404);
      expect((await alice.request('DELETE', '/api/v1/policies/acme/app')).status).to.equal(200);
      refused(await chief.request('GET', '/api/v1/policies/..%2Fx'), 400, 'INVALID');
      const set = await send(chief, 'PUT', '/api/v1/policies/acme', { quotaBytes: 1000, immutableTags: ['v*'] });
      expect(set.status, set.text).to.equal(200);
      expect((await chief.request('GET', '/api/v1/policies/acme')).json).to.deep.equal({ scope: 'acme', policy: { quotaBytes: 1000, immutableTags: ['v*'] }, usageBytes: 0 });
      expect(JSON.parse(await cli(served.berth, ['policy', 'show', 'acme'])).policy).to.deep.equal({ quotaBytes: 1000, immutableTags: ['v*'] });
      expect((await chief.request('GET', '/api/v1/policies')).json.policies.map((p: any) => p.scope)).to.include('acme');

      refused(await send(chief, 'PUT', '/api/v1/policies/acme/app', { quotaBytes: 1 }), 400, 'INVALID');
      refused(await send(chief, 'PUT', '/api/v1/policies/acme', { immutableTags: 5 }), 400, 'INVALID');
      refused(await chief.request('PUT', '/api/v1/policies/acme', { body: '[1]', headers: JSON_TYPE }), 400);

      expect((await chief.request('DELETE', '/api/v1/policies/acme')).status).to.equal(200);
      refused(await chief.request('DELETE', '/api/v1/policies/acme'), 404, 'NOT_FOUND');
      refused(await chief.request('GET', '/api/v1/policies/acme'), 404, 'NOT_FOUND');
    });

    it('answers the rest of /api/v1 (search, sign-up, GC, webhooks) with no 5xx', async () => {
      expect((await alice.request('GET', '/api/v1/search?q=app')).status).to.equal(200);
      const signUp = await send(served.registry, 'POST', '/api/v1/users', { username: 'newcomer', password: 'newcomer-password-1' });
      expect(signUp.status, 'private mode: no sign-up').to.be.within(400, 499);
      expect((await chief.request('GET', '/api/v1/admin/gc')).status).to.equal(200);
      refused(await bob.request('POST', '/api/v1/admin/gc'), 403);
      const hook = await send(chief, 'POST', '/api/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['push'] });
      expect(hook.status, hook.text).to.equal(201);
      expect((await chief.request('GET', '/api/v1/webhooks')).json.endpoints.map((e: any) => e.id)).to.deep.equal([hook.json.id]);
      expect((await chief.request('GET', `/api/v1/webhooks/${hook.json.id}`)).status).to.equal(200);
      expect((await chief.request('GET', `/api/v1/webhooks/${hook.json.id}/deliveries`)).status).to.equal(200);
      expect((await chief.request('DELETE', `/api/v1/webhooks/${hook.json.id}`)).status).to.equal(200);

      // Replication rules: admins only (a rule reads and writes any repository).
      const rule = { name: 'api-rule', direction: 'push', remote: { url: 'http://127.0.0.1:9' }, repositories: ['nothing/matches'] };
      refused(await send(bob, 'POST', '/api/v1/replication/rules', rule), 403);
      // Refused as every admin API write is: in the audit log.
      await waitFor(() => auditOf(served.berth).some((a) => a.who === 'bob' && a.action === 'POST /api/v1/replication/rules' && !a.allowed) || undefined, 'the refusal audited');
      expect((await send(chief, 'POST', '/api/v1/replication/rules', rule)).status).to.equal(201);
      refused(await bob.request('GET', '/api/v1/replication/rules'), 403);
      expect((await chief.request('GET', '/api/v1/replication/rules')).json.rules.map((r: any) => r.name)).to.deep.equal(['api-rule']);
      expect((await send(chief, 'POST', '/api/v1/replication/rules/api-rule/run', {})).status).to.equal(202);
      await waitFor(async () => (await chief.request('GET', '/api/v1/replication/rules/api-rule')).json.last?.outcome, 'the run of api-rule');
      // Its page: admins only; anyone else finds nothing there.
      expect((await chief.request('GET', '/admin/replication')).text).to.include('id="rule-api-rule"');
      expect((await bob.request('GET', '/admin/replication')).status).to.equal(404);
      expect((await chief.request('DELETE', '/api/v1/replication/rules/api-rule')).status).to.equal(200);
    });

    // Last: what the tests above sent, as the server logged it.
    it('has been asked every operation the OpenAPI document names, and answered none with a 5xx', async () => {
      const requests = () => requestsSince(served.berth, 0).filter((r) => r.path.startsWith('/api/v1/'));
      const unasked = () => Object.entries(OPENAPI_DOCUMENT.paths).flatMap(([template, ops]) => {
        const pattern = new RegExp(`^${template.replace(/\{(\w+)\}/g, (_, name: string) => (name === 'name' || name === 'scope' ? '.+' : '[^/]+'))}(\\?.*)?$`);
        return Object.keys(ops)
          .map((m) => m.toUpperCase())
          .filter((method) => !requests().some((r) => r.method === method && pattern.test(r.path)))
          .map((method) => `${method} ${template}`);
      });
      // The server logs a request after answering it: the last ones may still be on their way.
      await waitFor(() => unasked().length === 0 || undefined, 'the log of the last requests').catch(() => undefined);
      expect(unasked()).to.deep.equal([]);
      expect(requests().filter((r) => r.status >= 500), 'server errors').to.deep.equal([]);
    });
  });
});
