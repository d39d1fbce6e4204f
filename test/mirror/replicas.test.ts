// Replicas of one Berth (shared storage, shared Redis) fetch a blob once between them: the fill holds the
// coordination lock `mirror-fill:<digest>`, and a replica that waited for it finds the blob stored. A tag
// found current upstream by one replica is not asked for again by the other within tagTtlSeconds.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { hashedGet, metric, mirrorsEnv, upstreamRequests, UpstreamRegistry } from './helpers.ts';

describe('pull-through cache: replicas', function () {
  this.timeout(120_000);
  let upstream: TestDistribution;
  let redis: TestRedis;
  let dataDir: string;
  let replicas: TestBerth[] = [];

  before(async () => {
    upstream = await startDistribution();
    redis = await startRedis();
    dataDir = mkdtempSync(join(tmpdir(), 'berth-mirror-replicas-'));
    const env = { ...mirrorsEnv([{ prefix: 'dist', upstream: upstream.url }]), BERTH_REDIS_URL: redis.url };
    replicas = [await startBerth({ dataDir, env }), await startBerth({ dataDir, env })];
  });
  after(async () => {
    for (const replica of replicas) await replica.stop();
    await redis?.stop();
    await upstream?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('makes one upstream GET for concurrent pulls of a new blob through two replicas', async () => {
    const data = randomBytes(16 * 1024 * 1024);
    const digest = await new UpstreamRegistry(upstream.url).pushBlob('team/shared', data);
    const before = upstream.accessLog.length;
    const pulls = await Promise.all(
      replicas.flatMap((replica) => Array.from({ length: 4 }, () => hashedGet(`${replica.url}/v2/dist/team/shared/blobs/${digest}`))),
    );
    for (const pull of pulls) expect(pull).to.deep.include({ status: 200, digest, bytes: data.length, complete: true });
    expect(upstreamRequests(upstream, before).filter((r) => r === `GET /v2/team/shared/blobs/${digest}`)).to.have.length(1);
    // Both replicas served it: one filled it, the other found it stored once the fill's lock was free.
    const misses = await Promise.all(replicas.map((r) => metric(new Registry(r.url), 'berth_mirror_requests_total', { mirror: 'dist', outcome: 'miss' })));
    expect(misses.sort()).to.deep.equal([0, 1]);
  });

  it('asks the upstream for a tag once per tagTtlSeconds across replicas, not once per replica', async () => {
    await new UpstreamRegistry(upstream.url).pushImage('team/tagged', 'v1', { layers: ['tagged layer'] });
    const before = upstream.accessLog.length;
    const accept = { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' };
    for (const replica of [...replicas, ...replicas]) {
      const reply = await new Registry(replica.url).request('GET', '/v2/dist/team/tagged/manifests/v1', { headers: accept });
      expect(reply.status).to.equal(200);
    }
    // A request of our own to the upstream, logged after every request the replicas made before it.
    await fetch(`${upstream.url}/v2/?sentinel`);
    await waitFor(() => upstreamRequests(upstream, before).includes('GET /v2/?sentinel'), 'the sentinel in the upstream log', 10_000);
    // Only the first pull asked about the tag; every later one, on either replica, was served without asking.
    const asked = upstreamRequests(upstream, before).filter((r) => r.includes('/v2/team/tagged/manifests/v1'));
    expect(asked).to.deep.equal(['HEAD /v2/team/tagged/manifests/v1']);
  });
});
