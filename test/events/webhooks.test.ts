// Webhooks against real Berth processes and a real HTTP receiver on 127.0.0.1 (allowed by
// BERTH_WEBHOOK_ALLOW): the envelope and its signature, a receiver that is down (and a server restarted
// meanwhile), the queue's bound, refused destinations, redirects, and two replicas sending each event once.
import { expect } from 'chai';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EVENTS_MEDIA_TYPE } from '../../events/index.ts';
import { startBerth, useBerth, type TestBerth } from '../helpers/berth.ts';
import { startReceiver, type Receiver } from '../helpers/receiver.ts';
import { Registry, OCI_MANIFEST, type RawResponse } from '../helpers/registry.ts';
import { freePort } from '../helpers/redis.ts';
import { useReplicas } from '../helpers/replicas.ts';
import { waitFor } from '../helpers/wait.ts';

const FAST_RETRIES = {
  BERTH_WEBHOOK_ALLOW: '127.0.0.1',
  BERTH_WEBHOOK_RETRY_BASE_MS: '50',
  BERTH_WEBHOOK_RETRY_MAX_MS: '200',
  BERTH_WEBHOOK_MAX_ATTEMPTS: '1000',
  BERTH_WEBHOOK_POLL_MS: '100',
};

async function addEndpoint(registry: Registry, body: object): Promise<RawResponse> {
  return registry.request('POST', '/api/v1/webhooks', { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
}

/** Adds an endpoint for the receiver and gives it the secret; returns the endpoint's id. */
async function subscribe(registry: Registry, receiver: Receiver, body: object = {}): Promise<string> {
  const res = await addEndpoint(registry, { url: receiver.url, ...body });
  expect(res.status, res.text).to.equal(201);
  receiver.secret = res.json.secret;
  return res.json.id as string;
}

async function deliveries(registry: Registry, id: string): Promise<any> {
  const res = await registry.request('GET', `/api/v1/webhooks/${id}/deliveries`);
  expect(res.status, res.text).to.equal(200);
  return res.json;
}

/** Every file under a folder, for looking for a secret in the clear. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    const info = statSync(path);
    return info.isDirectory() ? filesUnder(path) : info.isFile() ? [path] : [];
  });
}

describe('webhooks', function () {
  describe('on one server', function () {
    const served = useBerth({ env: FAST_RETRIES });
    const { registry } = served;
    let receiver: Receiver;
    beforeEach(async () => (receiver = await startReceiver()));
    afterEach(() => receiver.close());

    it('sends a push as Distribution\'s envelope, signed with the secret shown once', async function () {
      const id = await subscribe(registry, receiver, { events: ['push', 'delete'] });
      const listed = await registry.request('GET', '/api/v1/webhooks');
      expect(listed.text).not.to.include(receiver.secret!);
      expect(listed.json.endpoints.find((e: any) => e.id === id)).to.include({ url: receiver.url }).and.not.have.property('sealedSecret');

      const pushed = await registry.pushImage('hooks/app', 'v1');
      const berth = served.berth;
      await waitFor(() => receiver.deliveries.length >= 1, 'the push event');
      const delivery = receiver.deliveries[0];
      expect(delivery!.verified, 'signature').to.equal(true);
      expect(delivery!.headers['content-type']).to.equal(EVENTS_MEDIA_TYPE);
      expect(delivery!.json.events).to.have.length(1);
      const event = delivery!.json.events[0];
      expect(event.id).to.be.a('string').and.equal(delivery!.headers['berth-webhook-id']);
      expect(Date.parse(event.timestamp)).to.be.closeTo(Date.now(), 60_000);
      expect(event.action).to.equal('push');
      expect(event.target).to.deep.equal({
        mediaType: OCI_MANIFEST,
        digest: pushed.digest,
        size: pushed.manifest.length,
        length: pushed.manifest.length,
        repository: 'hooks/app',
        tag: 'v1',
        url: `http://${berth.host}/v2/hooks/app/manifests/${pushed.digest}`,
      });
      expect(event.request).to.include({ method: 'PUT', host: berth.host, addr: '127.0.0.1' });
      expect(event.request.id).to.be.a('string').and.not.equal('');
      expect(event.request).to.have.property('useragent');
      expect(event.actor).to.deep.equal({});
      expect(event.source.instanceID).to.be.a('string');
      expect(event.source.addr).to.be.a('string').and.not.equal('');

      // A signature over another body (or with another secret) does not hold.
      const { verifyDelivery } = await import('../../events/index.ts');
      const headers = { timestamp: delivery!.headers['berth-webhook-timestamp'] as string, signature: delivery!.headers['berth-webhook-signature'] as string };
      expect(verifyDelivery(receiver.secret!, headers, Buffer.from(delivery!.body.toString().replace('v1', 'v2')))).to.equal(false);
      expect(verifyDelivery('another secret', headers, delivery!.body)).to.equal(false);

      const deleted = await registry.request('DELETE', '/v2/hooks/app/manifests/v1');
      expect(deleted.status).to.equal(202);
      await waitFor(() => receiver.deliveries.length >= 2, 'the delete event');
      expect(receiver.deliveries[1]!.json.events[0]).to.deep.include({ action: 'delete' });
      expect(receiver.deliveries[1]!.json.events[0].target).to.include({ repository: 'hooks/app', tag: 'v1', digest: pushed.digest });
      // The route hands storage the request with the change: a delete names its own.
      expect(receiver.deliveries[1]!.json.events[0].request).to.include({ method: 'DELETE', host: berth.host, addr: '127.0.0.1' });
      expect(receiver.deliveries[1]!.json.events[0].request.id).to.be.a('string').and.not.equal(event.request.id);
      expect(receiver.deliveries[1]!.verified).to.equal(true);

      // The receiver records a delivery before it answers, the log is written after the answer: waited for.
      const log = await waitFor(async () => {
        const read = await deliveries(registry, id);
        return read.deliveries.length >= 2 ? read : undefined;
      }, 'the second delivery in the log');
      expect(log.deliveries.map((d: any) => [d.outcome, d.status, d.attempt])).to.deep.equal([['delivered', 204, 1], ['delivered', 204, 1]]);
      // The secret is in no file of the storage in the clear, and in no log line.
      for (const file of filesUnder(berth.dataDir)) expect(readFileSync(file).includes(receiver.secret!), file).to.equal(false);
      expect(berth.logs.join('\n')).not.to.include(receiver.secret!);
      expect((await registry.request('DELETE', `/api/v1/webhooks/${id}`)).status).to.equal(200);
    });

    it('names the request behind a blob delete; a collection, which no request caused, names none', async function () {
      const id = await subscribe(registry, receiver, { events: ['delete', 'gc'] });
      const pushed = await registry.pushImage('hooks/blobs', 'v1');
      const removed = await registry.request('DELETE', `/v2/hooks/blobs/blobs/${pushed.layers[0]}`, { headers: { 'User-Agent': 'blob-remover/1' } });
      expect(removed.status).to.equal(202);
      await waitFor(() => receiver.deliveries.length >= 1, 'the blob delete event');
      const event = receiver.deliveries[0]!.json.events[0];
      expect(event.target).to.include({ mediaType: 'application/octet-stream', digest: pushed.layers[0], repository: 'hooks/blobs' });
      expect(event.request).to.include({ method: 'DELETE', useragent: 'blob-remover/1', addr: '127.0.0.1' });
      const gc = await registry.request('POST', '/api/v1/admin/gc', { body: '{}', headers: { 'Content-Type': 'application/json' } });
      expect(gc.status, gc.text).to.be.oneOf([200, 202]);
      const collected = await waitFor(() => receiver.deliveries.find((d) => d.json.events[0].action === 'gc'), 'the gc event');
      expect(collected.json.events[0]).not.to.have.property('request');
      expect(collected.json.events[0]).not.to.have.property('actor');
      expect((await registry.request('DELETE', `/api/v1/webhooks/${id}`)).status).to.equal(200);
    });

    it('sends pulls only to endpoints that asked for them, and a namespace\'s events only to its endpoints', async function () {
      const other = await startReceiver();
      try {
        const pulls = await subscribe(registry, receiver, { namespace: 'pulled', events: ['pull'] });
        const otherId = await subscribe(registry, other, { namespace: 'elsewhere', events: ['push', 'pull'] });
        await registry.pushImage('pulled/app', 'v1');
        const got = await registry.request('GET', '/v2/pulled/app/manifests/v1', { headers: { Accept: OCI_MANIFEST } });
        expect(got.status).to.equal(200);
        await waitFor(() => receiver.deliveries.length >= 1, 'the pull event');
        expect(receiver.deliveries.map((d) => d.json.events[0].action)).to.deep.equal(['pull']);
        expect(receiver.deliveries[0]!.json.events[0].target).to.include({ repository: 'pulled/app', tag: 'v1', digest: got.headers['docker-content-digest'] });
        expect(receiver.deliveries[0]!.json.events[0].request.method).to.equal('GET');
        // The other namespace's endpoint heard nothing: nothing waits for it, and its log (written with every
        // delivery) is empty.
        expect((await deliveries(registry, otherId))).to.deep.include({ waiting: 0, droppedFull: 0, deliveries: [] });
        expect(other.deliveries).to.deep.equal([]);
        await registry.request('DELETE', `/api/v1/webhooks/${pulls}`);
        await registry.request('DELETE', `/api/v1/webhooks/${otherId}`);
      } finally {
        await other.close();
      }
    });

    it('refuses endpoints that are not endpoints', async function () {
      for (const [body, code] of [
        [{ url: 'ftp://example.com/' }, 'INVALID'],
        [{ url: 'http://user:pw@127.0.0.1/' }, 'INVALID'],
        [{ url: 'not a url' }, 'INVALID'],
        [{ url: receiver.url, events: ['push', 'everything'] }, 'INVALID'],
        [{ url: receiver.url, events: [] }, 'INVALID'],
        [{ url: receiver.url, namespace: 'team', events: ['gc'] }, 'INVALID'],
        [{ url: receiver.url, namespace: '../x' }, 'INVALID'],
      ] as const) {
        const res = await addEndpoint(registry, body);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.json.errors[0].code).to.equal(code);
      }
      const notJson = await registry.request('POST', '/api/v1/webhooks', { body: '[', headers: { 'Content-Type': 'application/json' } });
      expect(notJson.status).to.equal(400);
      expect((await registry.request('GET', '/api/v1/webhooks/0123456789abcdef/deliveries')).status).to.equal(404);
    });

    it('delivers what waited while the receiver was down, after it comes back, in order, across a restart of the server', async function () {
      const berth = served.berth;
      const id = await subscribe(registry, receiver);
      await receiver.down();
      for (const tag of ['t1', 't2', 't3']) await registry.pushImage('hooks/down', tag);
      await waitFor(async () => (await deliveries(registry, id)).deliveries.some((d: any) => d.outcome === 'failed'), 'a failed delivery');
      await berth.restart();
      await registry.pushImage('hooks/down', 't4');
      expect((await registry.request('GET', `/api/v1/webhooks/${id}`)).json.waiting).to.equal(4);
      await receiver.up();
      await waitFor(() => receiver.deliveries.length >= 4, 'four deliveries', 15_000);
      expect(receiver.deliveries.map((d) => d.json.events[0].target.tag)).to.deep.equal(['t1', 't2', 't3', 't4']);
      expect(receiver.deliveries.every((d) => d.verified)).to.equal(true);
      const log = await deliveries(registry, id);
      const failed = log.deliveries.filter((d: any) => d.outcome === 'failed');
      expect(failed.length).to.be.greaterThan(0);
      expect(failed[0].reason).to.match(/cannot reach the receiver: ECONNREFUSED/);
      // Each later attempt at the head is numbered on: the first delivered event says how often it was tried.
      expect(log.deliveries.find((d: any) => d.outcome === 'delivered').attempt).to.be.greaterThan(1);
      // The receiver has the last event a moment before the server records it as sent.
      await waitFor(async () => (await deliveries(registry, id)).waiting === 0, 'the queue to be empty', 10_000);
      await registry.request('DELETE', `/api/v1/webhooks/${id}`);
    });

    it('manages endpoints with berth webhook add, list, log and rm', async function () {
      const berth = served.berth;
      const added = await berth.cli(['webhook', 'add', receiver.url, '--event', 'push']);
      expect(added.code, added.stderr).to.equal(0);
      const endpoint = JSON.parse(added.stdout);
      expect(endpoint.secret).to.be.a('string');
      receiver.secret = endpoint.secret;
      const listed = await berth.cli(['webhook', 'list']);
      expect(listed.stdout).to.include(endpoint.id).and.not.include(endpoint.secret);
      // The running server sees an endpoint added by the command at its next event.
      await registry.pushImage('hooks/cli', 'v1');
      await waitFor(() => receiver.deliveries.length >= 1, 'the push event');
      expect(receiver.deliveries[0]!.verified).to.equal(true);
      const log = await berth.cli(['webhook', 'log', endpoint.id]);
      expect(JSON.parse(log.stdout).deliveries[0]).to.include({ outcome: 'delivered', status: 204, attempt: 1 });
      const refused = await berth.cli(['webhook', 'add', 'http://192.168.1.1/hook']);
      expect(refused.code).to.equal(2);
      expect(refused.stderr).to.match(/192\.168\.1\.1 is a private address/);
      expect((await berth.cli(['webhook', 'rm', endpoint.id])).code).to.equal(0);
      expect((await berth.cli(['webhook', 'log', endpoint.id])).code).to.equal(1);
    });
  });

  describe('bounds', function () {
    const { registry } = useBerth({
      env: { ...FAST_RETRIES, BERTH_WEBHOOK_QUEUE_LIMIT: '2', BERTH_WEBHOOK_RETRY_BASE_MS: '60000', BERTH_WEBHOOK_RETRY_MAX_MS: '60000', BERTH_WEBHOOK_MAX_ATTEMPTS: '2' },
    });

    it('holds the queue to its limit while the receiver never returns, and records each drop', async function () {
      const port = await freePort();
      const res = await addEndpoint(registry, { url: `http://127.0.0.1:${port}/never` });
      expect(res.status, res.text).to.equal(201);
      const id = res.json.id;
      for (let i = 1; i <= 5; i++) await registry.pushImage('bounds/app', `v${i}`);
      const shown = (await registry.request('GET', `/api/v1/webhooks/${id}`)).json;
      expect(shown).to.include({ waiting: 2, droppedFull: 3 });
      const log = await deliveries(registry, id);
      const dropped = log.deliveries.filter((d: any) => d.outcome === 'dropped');
      expect(dropped).to.have.length(3);
      expect(dropped[0].reason).to.equal('the queue holds 2 events already');
    });
  });

  describe('redirects and retries', function () {
    const { registry } = useBerth({ env: { ...FAST_RETRIES, BERTH_WEBHOOK_MAX_ATTEMPTS: '2' } });

    it('does not follow a redirect, and drops the event after the last attempt, recorded', async function () {
      const target = await startReceiver();
      const redirecting = await startReceiver();
      try {
        redirecting.answer = (res) => {
          res.writeHead(302, { Location: target.url });
          res.end('a body that is never shown back');
        };
        const id = await subscribe(registry, redirecting);
        await registry.pushImage('redirect/app', 'v1');
        const log = await waitFor(async () => {
          const now = await deliveries(registry, id);
          return now.deliveries.some((d: any) => d.outcome === 'dropped') && now;
        }, 'the drop');
        expect(log.deliveries.map((d: any) => [d.outcome, d.status, d.attempt])).to.deep.equal([['failed', 302, 1], ['dropped', 302, 2]]);
        expect(log.deliveries[1].reason).to.equal('a redirect (302) is not followed; dropped after 2 attempts');
        expect(JSON.stringify(log)).not.to.include('never shown back');
        expect(redirecting.deliveries).to.have.length(2);
        expect(target.deliveries).to.have.length(0);
      } finally {
        await target.close();
        await redirecting.close();
      }
    });
  });

  describe('destinations', function () {
    it('refuses private, loopback and link-local destinations unless allowed, checked again at each connection', async function () {
      const receiver = await startReceiver();
      const allowed = await startBerth({ env: { ...FAST_RETRIES, BERTH_WEBHOOK_ALLOW: '127.0.0.1,::1' } });
      let strict: TestBerth | undefined;
      try {
        const registry = new Registry(allowed.url);
        // Added while the allow-list named loopback; `localhost` resolves to it.
        const named = await addEndpoint(registry, { url: `http://localhost:${receiver.port}/hook` });
        expect(named.status, named.text).to.equal(201);
        await allowed.stop();
        strict = await startBerth({ dataDir: allowed.dataDir, env: { ...FAST_RETRIES, BERTH_WEBHOOK_ALLOW: '' } });
        const strictRegistry = new Registry(strict.url);
        for (const url of [receiver.url, 'http://10.1.2.3/', 'http://169.254.169.254/latest', 'http://[::1]:9/', 'http://[::ffff:127.0.0.1]/', 'http://[fe80::1]/', 'http://localhost/']) {
          const res = await addEndpoint(strictRegistry, { url });
          expect(res.status, url).to.equal(400);
          expect(res.json.errors[0].code, url).to.equal('DESTINATION_REFUSED');
        }
        // The endpoint added before is refused when it connects: its name resolves to loopback.
        await strictRegistry.pushImage('dest/app', 'v1');
        const log = await waitFor(async () => {
          const now = await deliveries(strictRegistry, named.json.id);
          return now.deliveries.length > 0 && now;
        }, 'a refused delivery');
        expect(log.deliveries[0].outcome).to.equal('failed');
        expect(log.deliveries[0].reason).to.match(/^refused: localhost: .* is a loopback address/);
        expect(receiver.deliveries).to.have.length(0);
      } finally {
        await strict?.stop();
        await allowed.destroy();
        await receiver.close();
      }
    });
  });

  describe('two replicas', function () {
    const replicas = useReplicas(FAST_RETRIES);

    it('delivers each event once, in order, whichever replica queued it', async function () {
      const receiver = await startReceiver();
      try {
        const a = new Registry(replicas.a.url);
        const b = new Registry(replicas.b.url);
        const id = await subscribe(a, receiver, { events: ['push'] });
        const tags = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'];
        for (const [i, tag] of tags.entries()) await (i % 2 === 0 ? a : b).pushImage('replicated/app', tag);
        await waitFor(async () => {
          const log = await deliveries(b, id);
          return log.waiting === 0 && log.deliveries.filter((d: any) => d.outcome === 'delivered').length === tags.length;
        }, 'every event delivered', 15_000);
        expect(receiver.deliveries.map((d) => d.json.events[0].target.tag)).to.deep.equal(tags);
        expect(new Set(receiver.deliveries.map((d) => d.json.events[0].id)).size).to.equal(tags.length);
        expect(receiver.deliveries.every((d) => d.verified)).to.equal(true);
        // Both replicas queued: the events name two instances.
        expect(new Set(receiver.deliveries.map((d) => d.json.events[0].source.instanceID)).size).to.equal(2);
      } finally {
        await receiver.close();
      }
    });
  });
});
