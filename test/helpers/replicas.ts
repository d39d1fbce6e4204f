// Two Berth replicas on one data folder and one new redis-server, for a mocha suite (before/after).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from './berth.ts';
import { startRedis, type TestRedis } from './redis.ts';

export interface Replicas {
  a: TestBerth;
  b: TestBerth;
  redis: TestRedis;
  /** The data folder both serve. */
  dataDir: string;
}

/** The replicas are there once the suite's `before` has run. */
export function useReplicas(env: Record<string, string> = {}): Replicas {
  const replicas = {} as Replicas;
  before(async () => {
    replicas.redis = await startRedis();
    replicas.dataDir = mkdtempSync(join(tmpdir(), 'berth-replicas-'));
    const options = { dataDir: replicas.dataDir, env: { BERTH_REDIS_URL: replicas.redis.url, ...env } };
    [replicas.a, replicas.b] = await Promise.all([startBerth(options), startBerth(options)]);
  });
  after(async () => {
    await replicas.a?.destroy();
    await replicas.b?.destroy();
    await replicas.redis?.stop();
    if (replicas.dataDir) rmSync(replicas.dataDir, { recursive: true, force: true });
  });
  return replicas;
}
