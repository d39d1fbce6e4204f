// Replicas of one Berth (shared storage, shared Redis) fetch a blob once between them: the fill holds the
// coordination lock `mirror-fill:<digest>`, and a replica that waited for it finds the blob stored.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { Registry } from '../helpers/registry.ts';
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
});
