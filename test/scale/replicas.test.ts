import { expect } from 'chai';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { sharedS3, type TestS3 } from '../helpers/s3.ts';
import { errorCode, OCI_MANIFEST, Registry, sha256 } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { addUser, AuthorizedRegistry, bearer, cli, tokenFor, tokenRequest } from '../helpers/auth.ts';

describe('two replicas sharing storage and a real redis-server', () => {
  let redis: TestRedis;
  let dataDir: string;
  let a: TestBerth;
  let b: TestBerth;
  let ra: Registry;
  let rb: Registry;

  before(async () => {
    redis = await startRedis();
    dataDir = mkdtempSync(join(tmpdir(), 'berth-replicas-'));
    const env = { BERTH_REDIS_URL: redis.url };
    a = await startBerth({ dataDir, env });
    b = await startBerth({ dataDir, env });
    ra = new Registry(a.url);
    rb = new Registry(b.url);
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
    await redis?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a tag moved on one replica is seen at once on the other, though it had cached the old target', async () => {
    const first = await ra.pushImage('shared/app', 'v1', { layers: ['first'] });
    const seen = await rb.request('GET', '/v2/shared/app/manifests/v1');
    expect(seen.headers['docker-content-digest']).to.equal(first.digest);
    // Read it again so the target is surely in B's cache.
    expect((await rb.request('HEAD', '/v2/shared/app/manifests/v1')).headers['docker-content-digest']).to.equal(first.digest);

    const second = await ra.pushImage('shared/app', 'v1', { layers: ['second'] });
    const moved = await rb.request('GET', '/v2/shared/app/manifests/v1');
    expect(moved.headers['docker-content-digest']).to.equal(second.digest);
    expect(moved.body.equals(second.manifest)).to.equal(true);

    const del = await rb.request('DELETE', '/v2/shared/app/manifests/v1');
    expect(del.status).to.equal(202);
    expect((await ra.request('GET', '/v2/shared/app/manifests/v1')).status).to.equal(404);
    const byDigest = await rb.request('DELETE', `/v2/shared/app/manifests/${second.digest}`);
    expect(byDigest.status).to.equal(202);
    expect((await ra.request('GET', `/v2/shared/app/manifests/${second.digest}`)).status).to.equal(404);
  });

  it('a blob unlinked on one replica is unknown on the other at once, though it had cached it', async () => {
    const digest = await ra.pushBlob('shared/blobs', 'cached then deleted');
    for (let i = 0; i < 2; i++) expect((await rb.request('HEAD', `/v2/shared/blobs/blobs/${digest}`)).status).to.equal(200);
    expect((await ra.request('DELETE', `/v2/shared/blobs/blobs/${digest}`)).status).to.equal(202);
    expect((await rb.request('HEAD', `/v2/shared/blobs/blobs/${digest}`)).status).to.equal(404);
    expect((await rb.request('GET', `/v2/shared/blobs/blobs/${digest}`)).status).to.equal(404);
  });

  it('the catalog and repository existence follow pushes and deletes made on the other replica', async () => {
    const before = (await rb.request('GET', '/v2/_catalog')).json.repositories as string[];
    expect(before).to.not.include('shared/listed');
    const image = await ra.pushImage('shared/listed', 'v1');
    expect((await rb.request('GET', '/v2/_catalog')).json.repositories).to.include('shared/listed');
    expect((await rb.request('GET', '/v2/shared/listed/tags/list')).status).to.equal(200);
    expect((await rb.request('DELETE', `/v2/shared/listed/manifests/${image.digest}`)).status).to.equal(202);
    for (const registry of [ra, rb]) {
      expect((await registry.request('GET', '/v2/_catalog')).json.repositories).to.not.include('shared/listed');
      // Still there while it holds blobs, with no tags; unknown to both once those are deleted too.
      const listed = await registry.request('GET', '/v2/shared/listed/tags/list');
      expect(listed.status).to.equal(200);
      expect(listed.json.tags).to.deep.equal([]);
    }
    for (const digest of [image.config, ...image.layers]) {
      expect((await rb.request('DELETE', `/v2/shared/listed/blobs/${digest}`)).status).to.equal(202);
    }
    for (const registry of [ra, rb]) {
      expect((await registry.request('GET', '/v2/shared/listed/tags/list')).status).to.equal(404);
    }
    // Pushed again through the replica that had recorded it as listed: back in the catalog for both.
    await ra.pushImage('shared/listed', 'v2');
    for (const registry of [ra, rb]) {
      expect((await registry.request('GET', '/v2/_catalog')).json.repositories).to.include('shared/listed');
    }
  });

  it('an upload whose POST, PATCHes and PUT land on different replicas completes', async () => {
    const blob = Buffer.from('part one|part two|part three');
    const location = await ra.startUpload('shared/upload');
    expect((await rb.request('PATCH', location, { body: blob.subarray(0, 9), headers: { 'Content-Range': '0-8' } })).status).to.equal(202);
    expect((await ra.request('PATCH', location, { body: blob.subarray(9, 18), headers: { 'Content-Range': '9-17' } })).status).to.equal(202);
    const status = await rb.request('GET', location);
    expect(status.headers.range).to.equal('0-17');
    const put = await rb.request('PUT', `${location}?digest=${sha256(blob)}`, { body: blob.subarray(18) });
    expect(put.status, put.text).to.equal(201);
    expect((await ra.request('GET', `/v2/shared/upload/blobs/${sha256(blob)}`)).body.equals(blob)).to.equal(true);
  });

  it('concurrent chunks for one session on two replicas: exactly one lands', async () => {
    const location = await ra.startUpload('shared/race');
    const results = await Promise.all([
      ra.request('PATCH', location, { body: 'aaaa', headers: { 'Content-Range': '0-3' } }),
      rb.request('PATCH', location, { body: 'bbbb', headers: { 'Content-Range': '0-3' } }),
      ra.request('PATCH', location, { body: 'cccc', headers: { 'Content-Range': '0-3' } }),
      rb.request('PATCH', location, { body: 'dddd', headers: { 'Content-Range': '0-3' } }),
    ]);
    expect(results.map((r) => r.status).sort()).to.deep.equal([202, 416, 416, 416]);
    expect((await rb.request('GET', location)).headers.range).to.equal('0-3');
  });

  it('without Redis, pulls keep working and writes answer 503 with Retry-After; it recovers by itself', async () => {
    const image = await ra.pushImage('shared/outage', 'v1');
    await redis.stop();
    try {
      for (const registry of [ra, rb]) {
        const get = await registry.request('GET', '/v2/shared/outage/manifests/v1');
        expect(get.status).to.equal(200);
        expect(get.body.equals(image.manifest)).to.equal(true);
        expect((await registry.request('GET', `/v2/shared/outage/blobs/${image.layers[0]}`)).status).to.equal(200);
      }
      const other = Buffer.from(image.manifest.toString().replace('}', ',"annotations":{"during":"outage"}}'));
      const put = await ra.putManifest('shared/outage', 'v2', other, OCI_MANIFEST);
      expect(put.status).to.equal(503);
      expect(errorCode(put)).to.equal('UNAVAILABLE');
      expect(put.headers['retry-after']).to.equal('5');
      expect((await rb.request('GET', `/v2/shared/outage/manifests/${sha256(other)}`)).status, 'nothing half-written').to.equal(404);
      const location = await rb.startUpload('shared/outage');
      const patch = await rb.request('PATCH', location, { body: 'x' });
      expect(patch.status).to.equal(503);
      expect((await rb.request('GET', location)).headers.range, 'nothing appended').to.equal('0-0');
      expect((await ra.request('GET', '/v2/shared/outage/tags/list')).json.tags).to.deep.equal(['v1']);
    } finally {
      await redis.start();
    }
    const recovered = await waitFor(async () => {
      const res = await ra.putManifest('shared/outage', 'v2', image.manifest, OCI_MANIFEST);
      return res.status === 201 ? res : undefined;
    }, 'writes to work again after Redis returns', 15_000);
    expect(recovered.headers['docker-content-digest']).to.equal(image.digest);
    const seen = await rb.request('GET', '/v2/shared/outage/manifests/v2');
    expect(seen.status).to.equal(200);
  });
});

/**
 * Two replicas on one prefix of the shared s3rver bucket and one new redis-server, started together, for
 * a suite (before/after); each has a folder of its own, which stays empty.
 */
function useReplicasOnS3(prefix: string, extraEnv: Record<string, string> = {}): { a: TestBerth; b: TestBerth; ra: Registry; rb: Registry } {
  const replicas = {} as { a: TestBerth; b: TestBerth; ra: Registry; rb: Registry };
  let redis: TestRedis | undefined;
  before(async () => {
    const s3: TestS3 = await sharedS3();
    redis = await startRedis();
    const env = { ...s3.berthEnv(`${prefix}-${Date.now()}/`), BERTH_REDIS_URL: redis.url, ...extraEnv };
    [replicas.a, replicas.b] = await Promise.all([startBerth({ env }), startBerth({ env })]);
    replicas.ra = new Registry(replicas.a.url);
    replicas.rb = new Registry(replicas.b.url);
  });
  after(async () => {
    await replicas.a?.destroy();
    await replicas.b?.destroy();
    await redis?.stop();
  });
  return replicas;
}

describe('two replicas on one S3 bucket (s3rver) and one redis-server', () => {
  const replicas = useReplicasOnS3('replicas', { BERTH_S3_PART_SIZE: String(5 * 1024 * 1024) });

  it('a chunked upload opened on one replica, continued and finished on the other, pulls back identical from both', async () => {
    const blob = Buffer.alloc(12 * 1024 * 1024 + 321);
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 13) % 256;
    const location = await replicas.ra.startUpload('s3shared/app');
    const cut = [0, 3 * 1024 * 1024, 7 * 1024 * 1024, blob.length];
    for (let i = 0; i + 1 < cut.length; i++) {
      const registry = i % 2 === 0 ? replicas.ra : replicas.rb;
      const res = await registry.request('PATCH', location, {
        body: blob.subarray(cut[i]!, cut[i + 1]!),
        headers: { 'Content-Range': `${cut[i]}-${cut[i + 1]! - 1}` },
      });
      expect(res.status, res.text).to.equal(202);
    }
    const put = await replicas.rb.request('PUT', `${location}?digest=${sha256(blob)}`);
    expect(put.status, put.text).to.equal(201);
    for (const registry of [replicas.ra, replicas.rb]) {
      const back = await registry.request('GET', `/v2/s3shared/app/blobs/${sha256(blob)}`);
      expect(back.status).to.equal(200);
      expect(sha256(back.body)).to.equal(sha256(blob));
    }
    // Only the control sockets: no data in the servers' folders.
    expect(readdirSync(replicas.a.dataDir)).to.deep.equal(['control.sock']);
    expect(readdirSync(replicas.b.dataDir)).to.deep.equal(['control.sock']);
  });

  it('a tag pushed through one replica is served by the other at once, also after it moves', async () => {
    const first = await replicas.ra.pushImage('s3shared/app', 'v1', { layers: ['one'] });
    expect((await replicas.rb.request('GET', '/v2/s3shared/app/manifests/v1')).headers['docker-content-digest']).to.equal(first.digest);
    const second = await replicas.rb.pushImage('s3shared/app', 'v1', { layers: ['two'] });
    const seen = await replicas.ra.request('GET', '/v2/s3shared/app/manifests/v1');
    expect(seen.headers['docker-content-digest']).to.equal(second.digest);
    expect(seen.body.equals(second.manifest)).to.equal(true);
  });
});

describe('a rate limit shared by two replicas through Redis', () => {
  let redis: TestRedis;
  let a: TestBerth;
  let b: TestBerth;

  before(async () => {
    redis = await startRedis();
    const env = { BERTH_REDIS_URL: redis.url, BERTH_RATE_LIMIT_PER_MINUTE: '6' };
    a = await startBerth({ env });
    b = await startBerth({ env });
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
    await redis?.stop();
  });

  it('counts the requests of one address on both replicas together', async () => {
    const ra = new Registry(a.url);
    const rb = new Registry(b.url);
    for (let i = 0; i < 3; i++) {
      expect((await ra.request('GET', '/v2/')).status).to.equal(200);
      expect((await rb.request('GET', '/v2/')).status).to.equal(200);
    }
    for (const registry of [ra, rb]) {
      const res = await registry.request('GET', '/v2/');
      expect(res.status).to.equal(429);
      expect(errorCode(res)).to.equal('TOO_MANY_REQUESTS');
    }
  });
});

describe('two replicas with auth on one S3 bucket and one redis-server', () => {
  // Started together: both look for the signing key at once, and the lock must leave them one key.
  // Alice signed in from this address before, so her account's own limit spares it: the limit per account and
  // address is the one these failures meet, counted together by both replicas.
  const replicas = useReplicasOnS3('auth-replicas', { BERTH_MODE: 'public-index', BERTH_LOGIN_FAILURES_PER_ACCOUNT: '3', BERTH_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: '3' });
  before(() => addUser(replicas.a, 'alice', 'alice-password-1'));

  it('sign with one key, so a token from one replica opens the other', async () => {
    const kids = await Promise.all([replicas.ra, replicas.rb].map(async (r) => (await r.request('GET', '/.well-known/jwks.json')).json.keys[0].kid));
    expect(kids[0]).to.equal(kids[1]);
    const token = await tokenFor(replicas.ra, ['repository:alice/app:pull,push'], ['alice', 'alice-password-1']);
    const onB = new AuthorizedRegistry(replicas.b.url, bearer(token));
    const pushed = await onB.pushImage('alice/app', 'v1');
    expect((await replicas.ra.request('GET', '/v2/alice/app/manifests/v1', { headers: bearer(token) })).headers['docker-content-digest']).to.equal(pushed.digest);
  });

  it('see the same accounts and visibility, and count failed logins together', async () => {
    await cli(replicas.b, ['repo', 'visibility', 'alice/app', 'private']);
    const anonymous = await tokenFor(replicas.ra, ['repository:alice/app:pull']);
    expect((await replicas.rb.request('GET', '/v2/alice/app/manifests/v1', { headers: bearer(anonymous) })).status).to.equal(401);
    const statuses = [];
    for (const r of [replicas.ra, replicas.rb, replicas.ra, replicas.rb]) statuses.push((await tokenRequest(r, [], ['alice', 'wrong-password'])).status);
    expect(statuses).to.deep.equal([401, 401, 401, 429]);
  });
});
