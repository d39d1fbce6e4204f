// The whole HTTP API suite (every file in test/api/) a second time, with each Berth server keeping its data
// in S3 and its shared state in a real redis-server: one s3rver and one Redis for the run, a key prefix per
// server in each. The suites are loaded again as new module
// instances and placed under one suite whose hooks switch the servers' storage.
import { expect } from 'chai';
import { readdirSync, statSync } from 'node:fs';
import { Redis } from 'ioredis';
import { basename, join } from 'node:path';
import { startBerth, storeBerthDataIn } from './helpers/berth.ts';
import { Registry } from './helpers/registry.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { sharedS3, type TestS3 } from './helpers/s3.ts';

const onS3 = describe('the HTTP API with Berth on S3 (s3rver) and Redis (redis-server)', () => {
  let s3: TestS3;
  let redis: TestRedis;
  before(async () => {
    s3 = await sharedS3();
    redis = await startRedis();
    storeBerthDataIn(s3, redis.url);
  });
  after(async () => {
    storeBerthDataIn(undefined);
    await redis?.stop();
  });

  it('servers keep their shared state in Redis, under their own prefix', async () => {
    const berth = await startBerth();
    const client = new Redis(redis.url);
    try {
      await new Registry(berth.url).pushImage('state/app', 'v1');
      const prefix = `berth:${basename(berth.dataDir)}:`;
      const keys = (await client.keys(`${prefix}*`)).sort();
      // The generations of the repository's manifests and blob links, of the catalog and of the search index.
      expect(keys).to.deep.equal([`${prefix}gen:_catalog`, `${prefix}gen:_links:state/app`, `${prefix}gen:_search`, `${prefix}gen:state/app`]);
    } finally {
      client.disconnect();
      await berth.destroy();
    }
  });

  it('servers keep their data in the bucket, under their own prefix, and none in their folder', async () => {
    const berth = await startBerth();
    try {
      expect(berth.logs.map((line) => JSON.parse(line) as { msg?: string; storage?: string }).find((e) => e.msg === 'berth is serving')?.storage).to.equal('s3');
      const digest = await new Registry(berth.url).pushBlob('where/app', 'in the bucket');
      expect(await berth.storage.stat(`/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`)).to.include({ size: 13 });
      // Only the control socket (no data: the way `berth gc` on this machine reaches the server).
      expect(readdirSync(berth.dataDir)).to.deep.equal(['control.sock']);
      expect(statSync(join(berth.dataDir, 'control.sock')).isSocket()).to.equal(true);
    } finally {
      await berth.destroy();
    }
  });

  it('a bucket that does not exist stops start-up with a message that names it', async () => {
    let error: unknown;
    try {
      const berth = await startBerth({ env: { BERTH_S3_BUCKET: 'no-such-bucket' } });
      await berth.destroy();
    } catch (err) {
      error = err;
    }
    expect((error as Error)?.message).to.include('exited with 1').and.include('S3 bucket "no-such-bucket"').and.include('does not exist');
  });
});

const root = onS3.parent!;
const dir = join(import.meta.dirname, 'api');
for (const file of readdirSync(dir).filter((name) => name.endsWith('.test.ts')).sort()) {
  const before = root.suites.length;
  await import(`./api/${file}?storage=s3`);
  for (const suite of root.suites.splice(before)) {
    suite.parent = onS3;
    onS3.suites.push(suite);
  }
}
