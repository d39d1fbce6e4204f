import { expect } from 'chai';
import { Redis } from 'ioredis';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startRedis, startSentinel, type TestRedis } from '../helpers/redis.ts';
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
