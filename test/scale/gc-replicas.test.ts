// Garbage collection with several replicas sharing storage and Redis: one collection at a time.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedisCoordination, createStorage, FilesystemDriver, type Coordination } from '../../storage/index.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

interface GcLogEntry {
  msg?: string;
  startedAt?: string;
  finishedAt?: string;
}

describe('garbage collection across replicas (Redis lock)', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let dataDir: string;
  before(async () => {
    redis = await startRedis();
    dataDir = mkdtempSync(join(tmpdir(), 'berth-gc-replicas-'));
  });
  after(async () => {
    await redis?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a collection waits while another replica holds the lock, and starts only after it is released', async () => {
    const replicas: Coordination[] = [];
    try {
      for (let i = 0; i < 2; i++) replicas.push(await createRedisCoordination({ url: redis.url, keyPrefix: 'berth:gc-lock:' }));
      const storage = createStorage(new FilesystemDriver(dataDir), undefined, replicas[1]);
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let holding = false;
      const first = replicas[0]!.lock.run('gc', async () => {
        holding = true;
        await held;
      });
      await waitFor(() => holding, 'the first replica to hold the lock');
      let finished = false;
      const second = storage.gc.run({ graceSeconds: 0 }).then((report) => {
        finished = true;
        return report;
      });
      // The second run is queued on the lock: a few round trips later it still has not started.
      const client = (replicas[1] as unknown as { redis: { exists(key: string): Promise<number> } }).redis;
      for (let i = 0; i < 20; i++) expect(await client.exists('berth:gc-lock:lock:gc')).to.equal(1);
      expect(finished).to.equal(false);
      const releasedAt = Date.now();
      release();
      await first;
      const report = await second;
      expect(Date.parse(report.startedAt)).to.be.at.least(releasedAt);
    } finally {
      for (const coordination of replicas) await coordination.close();
    }
  });

  it('two replicas collecting on their schedules: one run per interval between them, never overlapping, and the kept image serves from both', async () => {
    const env = { BERTH_REDIS_URL: redis.url, BERTH_GC_INTERVAL_SECONDS: '1', BERTH_GC_GRACE_SECONDS: '0' };
    const servers: TestBerth[] = [];
    try {
      servers.push(await startBerth({ dataDir, env }), await startBerth({ dataDir, env }));
      const [a, b] = servers.map((s) => new Registry(s.url)) as [Registry, Registry];
      const kept = await a.pushImage('replicas/app', 'kept', { layers: ['kept layer'], config: { kept: true } });
      const dropped = await b.pushImage('replicas/app', 'dropped', { layers: ['dropped layer'], config: { kept: false } });
      expect((await a.request('DELETE', `/v2/replicas/app/manifests/${dropped.digest}`)).status).to.equal(202);

      await waitFor(async () => (await b.request('HEAD', `/v2/replicas/app/blobs/${dropped.layers[0]}`)).status === 404 && !(await servers[0]!.storage.stat(`/blobs/sha256/${dropped.layers[0]!.slice(7, 9)}/${dropped.layers[0]!.slice(7)}/data`)), 'the dropped layer to be collected', 20_000);
      const runs = () => servers.flatMap((s) => s.logs.map((l) => JSON.parse(l) as GcLogEntry).filter((e) => e.msg === 'garbage collection done'));
      await waitFor(() => runs().length >= 3, 'three scheduled collections', 20_000);

      // Both replicas' timers fire every second; the stamp in storage lets one run per interval through
      // (90% of it: timers drift), whichever replica comes first, and never two at once.
      const intervals = runs().map((e) => [Date.parse(e.startedAt!), Date.parse(e.finishedAt!)] as const).sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < intervals.length; i++) expect(intervals[i]![0] - intervals[i - 1]![1]).to.be.at.least(900);
      for (const registry of [a, b]) {
        expect((await registry.request('GET', '/v2/replicas/app/manifests/kept')).headers['docker-content-digest']).to.equal(kept.digest);
        expect((await registry.request('GET', `/v2/replicas/app/blobs/${kept.layers[0]}`)).text).to.equal('kept layer');
      }
    } finally {
      for (const server of servers) await server.stop();
    }
  });
});
