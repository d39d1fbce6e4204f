// Who manages which webhook endpoints, with accounts (private mode): a namespace's admins its own, admins
// every one and the global ones; nobody else sees them. An event names the actor who caused it.
import { expect } from 'chai';
import { addUser, AuthorizedRegistry, bearer, tokenFor } from '../helpers/auth.ts';
import { useBerth } from '../helpers/berth.ts';
import { startReceiver, type Receiver } from '../helpers/receiver.ts';
import type { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

describe('webhook endpoints and accounts', function () {
  const served = useBerth({ env: { BERTH_MODE: 'private', BERTH_WEBHOOK_ALLOW: '127.0.0.1' } });
  let receiver: Receiver;
  let admin: Registry, alice: Registry, bob: Registry;

  before(async () => {
    const { berth, registry } = served;
    await addUser(berth, 'chief', 'chief-password-1', true);
    await addUser(berth, 'alice', 'alice-password-1');
    await addUser(berth, 'bob', 'bob-password-1');
    const as = async (name: string, password: string, scopes: string[] = []) => new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, scopes, [name, password])));
    admin = await as('chief', 'chief-password-1');
    alice = await as('alice', 'alice-password-1', ['repository:alice/app:pull,push']);
    bob = await as('bob', 'bob-password-1');
    receiver = await startReceiver();
  });
  after(() => receiver?.close());

  const add = (registry: Registry, body: object) =>
    registry.request('POST', '/api/v1/webhooks', { body: JSON.stringify({ url: receiver.url, ...body }), headers: { 'Content-Type': 'application/json' } });

  it('lets a namespace\'s admin manage its endpoints, admins all, and nobody else see them', async function () {
    const anonymous = await served.registry.request('GET', '/api/v1/webhooks');
    expect(anonymous.status).to.equal(401);
    expect((await add(served.registry, { namespace: 'alice' })).status).to.equal(401);

    const aliceAdmin = new AuthorizedRegistry(served.berth.url, bearer(await tokenFor(served.registry, [], ['alice', 'alice-password-1'])));
    const own = await add(aliceAdmin, { namespace: 'alice', events: ['push'] });
    expect(own.status, own.text).to.equal(201);
    receiver.secret = own.json.secret;
    expect((await add(aliceAdmin, { namespace: 'bob' })).status).to.equal(403);
    expect((await add(aliceAdmin, {})).status).to.equal(403);

    const bobsView = await bob.request('GET', '/api/v1/webhooks');
    expect(bobsView.status).to.equal(200);
    expect(bobsView.json.endpoints).to.deep.equal([]);
    expect((await bob.request('GET', `/api/v1/webhooks/${own.json.id}/deliveries`)).status).to.equal(404);
    expect((await bob.request('DELETE', `/api/v1/webhooks/${own.json.id}`)).status).to.equal(404);

    const global = await add(admin, { events: ['push', 'gc'] });
    expect(global.status, global.text).to.equal(201);
    expect((await admin.request('GET', '/api/v1/webhooks')).json.endpoints.map((e: any) => e.id)).to.have.members([own.json.id, global.json.id]);
    expect((await aliceAdmin.request('GET', '/api/v1/webhooks')).json.endpoints.map((e: any) => e.id)).to.deep.equal([own.json.id]);
    expect((await admin.request('DELETE', `/api/v1/webhooks/${global.json.id}`)).status).to.equal(200);

    // An event names who caused it.
    await alice.pushImage('alice/app', 'v1');
    await waitFor(() => receiver.deliveries.length >= 1, 'the push event');
    expect(receiver.deliveries[0]!.verified).to.equal(true);
    expect(receiver.deliveries[0]!.json.events[0].actor).to.deep.equal({ name: 'alice' });
    expect(receiver.deliveries[0]!.json.events[0].target.repository).to.equal('alice/app');
  });
});
