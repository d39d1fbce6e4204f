import { expect } from 'chai';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startRedis, startRedisCluster, startSentinel, type TestRedis } from '../helpers/redis.ts';
import { Registry } from '../helpers/registry.ts';

describe('Redis through Sentinel (BERTH_REDIS_SENTINELS)', () => {
  let master: TestRedis;
  let sentinel: { port: number; stop(): Promise<void> };
  let berth: TestBerth;

  before(async () => {
    master = await startRedis();
    sentinel = await startSentinel(master);
    berth = await startBerth({ env: { BERTH_REDIS_SENTINELS: `127.0.0.1:${sentinel.port}`, BERTH_REDIS_SENTINEL_NAME: 'mymaster' } });
  });
  after(async () => {
    await berth?.destroy();
    await sentinel?.stop();
    await master?.stop();
  });

  it('finds the master through the Sentinel and keeps its shared state there', async () => {
    const registry = new Registry(berth.url);
    const image = await registry.pushImage('sentinel/app', 'v1');
    expect((await registry.request('GET', '/v2/sentinel/app/manifests/v1')).headers['docker-content-digest']).to.equal(image.digest);
    const client = new Redis(master.url);
    try {
      expect(await client.exists('berth:gen:sentinel/app')).to.equal(1);
    } finally {
      client.disconnect();
    }
  });
});

describe('Redis Cluster (BERTH_REDIS_CLUSTER)', () => {
  let cluster: { nodes: string; stop(): Promise<void> };
  let a: TestBerth;
  let b: TestBerth;

  before(async () => {
    cluster = await startRedisCluster();
    const dataDir = mkdtempSync(join(tmpdir(), 'berth-on-cluster-'));
    a = await startBerth({ dataDir, env: { BERTH_REDIS_CLUSTER: cluster.nodes } });
    b = await startBerth({ dataDir, env: { BERTH_REDIS_CLUSTER: cluster.nodes } });
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
    await cluster?.stop();
  });

  it('two replicas share locks and generations through the cluster: a moved tag is seen at once', async () => {
    const ra = new Registry(a.url);
    const rb = new Registry(b.url);
    const first = await ra.pushImage('cluster/app', 'v1', { layers: ['one'] });
    // Both replicas read (and cache) the first target before the other one moves the tag.
    for (const registry of [ra, rb]) {
      expect((await registry.request('GET', '/v2/cluster/app/manifests/v1')).headers['docker-content-digest']).to.equal(first.digest);
    }
    const second = await rb.pushImage('cluster/app', 'v1', { layers: ['two'] });
    expect((await ra.request('GET', '/v2/cluster/app/manifests/v1')).headers['docker-content-digest']).to.equal(second.digest);
    const client = new Cluster(cluster.nodes.split(',').map((n) => ({ host: '127.0.0.1', port: Number(n.split(':')[1]) })));
    try {
      expect(await client.exists('berth:gen:cluster/app')).to.equal(1);
    } finally {
      client.disconnect();
    }
    const location = await ra.startUpload('cluster/app');
    const results = await Promise.all([
      ra.request('PATCH', location, { body: 'aaaa', headers: { 'Content-Range': '0-3' } }),
      rb.request('PATCH', location, { body: 'bbbb', headers: { 'Content-Range': '0-3' } }),
    ]);
    expect(results.map((r) => r.status).sort()).to.deep.equal([202, 416]);
  });
});
