// The pull-through cache against a real upstream (CNCF Distribution, anonymous): cold and warm pulls,
// read-only mirrors, tag freshness, stale serving when the upstream is gone, wrong bytes never cached,
// one upstream GET for many concurrent pulls of a blob, a cut fill resumed, a client that leaves.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { errorCode, Registry, sha256 } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { getManifest, hashedGet, metric, mirrorsEnv, storedInBerth, upstreamRequests, UpstreamRegistry } from './helpers.ts';

describe('pull-through cache (Distribution upstream)', function () {
  this.timeout(120_000);
  let upstream: TestDistribution;
  let proxy: FaultProxy;
  let berth: TestBerth;
  const origin = new UpstreamRegistry('http://127.0.0.1:0');
  const mirror = new Registry('http://127.0.0.1:0');

  before(async () => {
    upstream = await startDistribution();
    origin.base = upstream.url;
    proxy = await startFaultProxy(upstream.url);
    berth = await startBerth({
      env: mirrorsEnv([
        { prefix: 'dist', upstream: upstream.url, tagTtlSeconds: 2 },
        // Through the fault proxy: cuts and refusals the upstream itself never makes.
        { prefix: 'faulty', upstream: proxy.url, tagTtlSeconds: 3600, timeoutSeconds: 5 },
      ]),
    });
    mirror.base = berth.url;
  });
  after(async () => {
    await berth?.destroy();
    await proxy?.close();
    await upstream?.stop();
  });

  it('pulls an image through on the first pull and serves it from storage afterwards, with no upstream request', async () => {
    const image = await origin.pushImage('team/app', 'v1', { layers: ['layer one', 'layer two'] });
    const res = await getManifest(mirror, 'dist/team/app', 'v1');
    expect(res.status, res.text).to.equal(200);
    expect(res.headers['docker-content-digest']).to.equal(image.digest);
    expect(res.body.equals(image.manifest)).to.equal(true);
    for (const [digest, data] of [[image.config, undefined], [image.layers[0], 'layer one'], [image.layers[1], 'layer two']] as const) {
      const blob = await mirror.request('GET', `/v2/dist/team/app/blobs/${digest}`);
      expect(blob.status, blob.text).to.equal(200);
      expect(sha256(blob.body)).to.equal(digest);
      if (data) expect(blob.text).to.equal(data);
    }
    const before = upstream.accessLog.length;
    // Warm: by digest, and by tag within the TTL.
    expect((await getManifest(mirror, 'dist/team/app', image.digest)).status).to.equal(200);
    for (const digest of [image.config, ...image.layers]) expect((await mirror.request('GET', `/v2/dist/team/app/blobs/${digest}`)).status).to.equal(200);
    expect((await getManifest(mirror, 'dist/team/app', 'v1')).status).to.equal(200);
    expect(upstreamRequests(upstream, before)).to.deep.equal([]);
    // A normal repository in storage, listed by the catalog and its tags.
    expect((await mirror.request('GET', '/v2/_catalog')).json.repositories).to.include('dist/team/app');
    expect((await mirror.request('GET', '/v2/dist/team/app/tags/list')).json.tags).to.deep.equal(['v1']);
    // containerd's hosts.toml form: the name without its prefix, the mirror named by ?ns=.
    expect((await getManifest(mirror, 'team/app', 'v1?ns=dist')).headers['docker-content-digest']).to.equal(image.digest);
    expect((await getManifest(mirror, 'team/app', 'v1')).status, 'no ns and no dockerMirror: a local name').to.equal(404);
    expect(await metric(mirror, 'berth_mirror_requests_total', { mirror: 'dist', outcome: 'hit' })).to.be.greaterThan(0);
    expect(await metric(mirror, 'berth_mirror_fetched_bytes_total', { mirror: 'dist' })).to.be.greaterThan(0);
  });

  it('labels a mirrored repository "mirror of <upstream>/<name>" in the catalog pages and /api/v1, and no other', async () => {
    const from = `${new URL(upstream.url).host}/team/labelled`;
    await origin.pushImage('team/labelled', 'v1', { layers: ['labelled layer'] });
    expect((await getManifest(mirror, 'dist/team/labelled', 'v1')).status).to.equal(200);
    await mirror.pushImage('local/labelled', 'v1', { layers: ['a local layer'] });
    const api = await mirror.request('GET', '/api/v1/repositories/dist/team/labelled');
    expect(api.status, api.text).to.equal(200);
    expect(api.json.mirrorOf).to.equal(from);
    expect((await mirror.request('GET', '/api/v1/repositories/local/labelled')).json.mirrorOf).to.equal(null);
    const page = await mirror.request('GET', '/r/dist/team/labelled');
    expect(page.text).to.contain(`<span class="badge mirror">mirror of ${from}</span>`);
    expect((await mirror.request('GET', '/r/local/labelled')).text).not.to.contain('mirror of');
    const found = await waitFor(async () => {
      const res = await mirror.request('GET', '/api/v1/search?q=labelled');
      const names = (res.json.results as { name: string }[]).map((r) => r.name);
      return names.includes('dist/team/labelled') && names.includes('local/labelled') ? (res.json.results as { name: string; mirrorOf: string | null }[]) : undefined;
    }, 'both repositories in the search');
    expect(found.find((r) => r.name === 'dist/team/labelled')!.mirrorOf).to.equal(from);
    expect(found.find((r) => r.name === 'local/labelled')!.mirrorOf).to.equal(null);
    const results = (await mirror.request('GET', '/?q=labelled')).text;
    expect(results).to.match(new RegExp(`<strong>dist/team/labelled</strong></a> <span class="badge mirror">mirror of ${from.replace(/\./g, '\\.')}</span>`));
    expect(results.match(/mirror of/g)).to.have.length(1);
  });

  it('refuses every write under a mirror prefix with DENIED', async () => {
    const attempts = [
      mirror.request('POST', '/v2/dist/team/app/blobs/uploads/'),
      mirror.request('PUT', '/v2/dist/team/app/manifests/v2', { body: '{}', headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } }),
      mirror.request('DELETE', '/v2/dist/team/app/manifests/v1'),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(res.status, res.text).to.equal(403);
      expect(errorCode(res)).to.equal('DENIED');
    }
    expect((await getManifest(mirror, 'dist/team/app', 'v1')).status).to.equal(200);
  });

  it('answers a tag the upstream never had with the upstream\'s error, in the spec\'s shape', async () => {
    const res = await getManifest(mirror, 'dist/team/app', 'nope');
    expect(res.status).to.equal(404);
    expect(errorCode(res)).to.equal('MANIFEST_UNKNOWN');
    const blob = await mirror.request('GET', `/v2/dist/team/app/blobs/${sha256('never pushed')}`);
    expect(blob.status).to.equal(404);
    expect(errorCode(blob)).to.equal('BLOB_UNKNOWN');
  });

  it('asks the upstream about a tag at most once per tagTtlSeconds, with HEAD, and follows a moved tag after it', async () => {
    const first = await origin.pushImage('team/moving', 'latest', { layers: ['moving 1'] });
    expect((await getManifest(mirror, 'dist/team/moving', 'latest')).headers['docker-content-digest']).to.equal(first.digest);
    const before = upstream.accessLog.length;
    const second = await origin.pushImage('team/moving', 'latest', { layers: ['moving 2'] });
    const pushed = upstream.accessLog.length;
    // Within the TTL: the cached digest, and the upstream not asked.
    expect((await getManifest(mirror, 'dist/team/moving', 'latest')).headers['docker-content-digest']).to.equal(first.digest);
    expect(upstreamRequests(upstream, pushed)).to.deep.equal([]);
    expect(before).to.be.lessThan(pushed);
    // After it: the new digest.
    await waitFor(async () => (await getManifest(mirror, 'dist/team/moving', 'latest')).headers['docker-content-digest'] === second.digest, 'the moved tag', 10_000);
    const asked = upstreamRequests(upstream, pushed).filter((r) => r.includes('/manifests/latest'));
    expect(asked.every((r) => r.startsWith('HEAD '))).to.equal(true);
    expect(asked.length).to.be.at.most(6); // one per 2 s TTL over the ≤ 10 s wait, never one per pull
  });

  it('never caches, nor serves whole, a blob whose upstream bytes do not match its digest', async () => {
    const data = randomBytes(300_000);
    const digest = await origin.pushBlob('team/bad', data);
    // Distribution serves what its storage holds: the bytes are changed under it (same length).
    const path = join(upstream.dataDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data');
    writeFileSync(path, randomBytes(data.length));
    const got = await hashedGet(`${berth.url}/v2/dist/team/bad/blobs/${digest}`);
    expect(got.complete && got.status === 200 && got.bytes === data.length, 'a whole 200 of wrong bytes').to.equal(false);
    await waitFor(async () => (await metric(mirror, 'berth_mirror_requests_total', { mirror: 'dist', outcome: 'upstream_error' })) > 0, 'the failure counted');
    expect(storedInBerth(berth, digest)).to.equal(false);
    expect(readdirSync(join(berth.dataDir, 'repositories', 'dist', 'team')).includes('bad') && readdirSync(join(berth.dataDir, 'repositories', 'dist', 'team', 'bad')).includes('_layers')).to.equal(false);
    // Asked again: fetched again (nothing was kept), and refused again.
    const again = await hashedGet(`${berth.url}/v2/dist/team/bad/blobs/${digest}`);
    expect(again.complete && again.status === 200 && again.bytes === data.length).to.equal(false);
    expect(storedInBerth(berth, digest)).to.equal(false);
  });

  it('fetches a new 64 MiB blob once for 8 concurrent pulls, streaming it to each as it arrives', async () => {
    const data = randomBytes(64 * 1024 * 1024);
    const digest = await origin.pushBlob('team/big', data);
    const before = upstream.accessLog.length;
    const pulls = await Promise.all(Array.from({ length: 8 }, () => hashedGet(`${berth.url}/v2/dist/team/big/blobs/${digest}`)));
    for (const pull of pulls) expect(pull).to.deep.include({ status: 200, digest, bytes: data.length, complete: true });
    const gets = upstreamRequests(upstream, before).filter((r) => r === `GET /v2/team/big/blobs/${digest}`);
    expect(gets).to.have.length(1);
    expect(storedInBerth(berth, digest)).to.equal(true);
  });

  it('resumes with Range a fill the upstream cut, and finishes it for the others when a client leaves', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const digest = await origin.pushBlob('team/cut', data);
    proxy.rules.push({ match: (m, url) => m === 'GET' && url.includes(digest), fault: { cutAfterBytes: 1024 * 1024 }, remaining: 1 });
    // The first client leaves after its first bytes; the fill goes on.
    await new Promise<void>((resolve, reject) => {
      const req = request(`${berth.url}/v2/faulty/team/cut/blobs/${digest}`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.on('close', () => resolve());
      req.once('error', reject);
      req.end();
    });
    await waitFor(() => storedInBerth(berth, digest), 'the blob stored whole', 20_000);
    const ranged = proxy.requests.filter((r) => r.url.includes(digest) && r.method === 'GET');
    // Resumed from what had arrived when the connection broke (at most the 1 MiB the proxy let through).
    expect(ranged).to.have.length(2);
    expect(ranged[0]!.range).to.equal(undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(ranged[1]!.range ?? '')?.[1]);
    expect(resumedAt).to.be.greaterThan(0).and.at.most(1024 * 1024);
    const got = await hashedGet(`${berth.url}/v2/faulty/team/cut/blobs/${digest}`);
    expect(got).to.deep.include({ status: 200, digest, complete: true });
  });

  it('serves cached tags stale when the upstream stops, and counts it; an unseen tag is UNAVAILABLE', async () => {
    const image = await origin.pushImage('team/kept', 'v1', { layers: ['kept layer'] });
    expect((await getManifest(mirror, 'faulty/team/kept', 'v1')).status).to.equal(200);
    expect((await mirror.request('GET', `/v2/faulty/team/kept/blobs/${image.layers[0]}`)).status).to.equal(200);
    // Forget when the tag was checked (in memory, by a restart; in storage, where replicas share it): the
    // next pull asks the upstream.
    await berth.restart();
    expect(await berth.storage.delete('/mirrors/faulty/checked')).to.equal(true);
    await proxy.close(); // the upstream is gone
    const res = await getManifest(mirror, 'faulty/team/kept', 'v1');
    expect(res.status, res.text).to.equal(200);
    expect(res.headers['docker-content-digest']).to.equal(image.digest);
    expect((await mirror.request('GET', `/v2/faulty/team/kept/blobs/${image.layers[0]}`)).text).to.equal('kept layer');
    expect(await metric(mirror, 'berth_mirror_requests_total', { mirror: 'faulty', outcome: 'stale' })).to.equal(1);
    const unseen = await getManifest(mirror, 'faulty/team/kept', 'v2');
    expect(unseen.status).to.equal(503);
    expect(errorCode(unseen)).to.equal('UNAVAILABLE');
    await waitFor(() => berth.logs.some((l) => l.includes('serving the cached tag')), 'the stale serve logged');
  });
});
