// Replicas of one Berth (shared storage, shared Redis) fetch a blob once between them: the fill holds the
// coordination lock `mirror-fill:<digest>`, and a replica that waits for it streams the fill's upload
// session as storage receives it (the filler announces its size through Redis), then finds the blob
// stored. A fill that fails cuts every replica's client short. A tag found current upstream by one
// replica is not asked for again by the other within tagTtlSeconds.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { hashedGet, metric, mirrorsEnv, storedInBerth, upstreamRequests, UpstreamRegistry } from './helpers.ts';

const MiB = 1024 * 1024;

/** A promise and what resolves it: how long the upstream holds a blob back is the test's to say. */
function release(): { until: Promise<void>; now(): void } {
  let now!: () => void;
  const until = new Promise<void>((resolve) => (now = resolve));
  return { until, now };
}

/**
 * A blob held back by the upstream after 4 MiB: a client of `fillVia` starts the fill, a client of
 * `followVia` then receives bytes before the upstream sends the rest, both end with the whole blob, and
 * the upstream saw one GET. Returns the blob's digest.
 */
async function streamsWhileHeld(upstream: TestDistribution, proxy: FaultProxy, fillVia: string, followVia: string, name: string): Promise<string> {
  const data = randomBytes(16 * MiB);
  const digest = await new UpstreamRegistry(upstream.url).pushBlob(name, data);
  const hold = release();
  proxy.rules.push({ match: (m, url) => m === 'GET' && url.includes(digest), fault: { holdAfterBytes: 4 * MiB, until: hold.until }, remaining: 1 });
  const filled = hashedGet(`${fillVia}/v2/slow/${name}/blobs/${digest}`);
  await waitFor(() => proxy.holding === 1, 'the upstream to hold the blob back after 4 MiB', 30_000);

  let received = 0;
  let announced: number | undefined;
  let answer = '';
  const followed = hashedGet(`${followVia}/v2/slow/${name}/blobs/${digest}`, (bytes, length, status, head) => {
    received = bytes;
    announced = length;
    answer = `${status} ${status === 200 ? '' : head}`;
  });
  await waitFor(() => received > 0, 'the second client to receive its first bytes', 30_000);
  expect(answer, 'the second client\'s answer').to.match(/^200 /);
  expect(proxy.holding, 'the upstream still holds the rest back').to.equal(1);
  expect(received).to.be.at.most(4 * MiB);
  expect(announced, 'the whole size, announced from the start').to.equal(data.length);
  hold.now();

  for (const pull of await Promise.all([filled, followed])) expect(pull).to.deep.include({ status: 200, digest, bytes: data.length, complete: true });
  expect(proxy.requests.filter((r) => r.method === 'GET' && r.url.includes(digest)), 'one upstream GET').to.have.length(1);
  expect((await new Registry(followVia).request('HEAD', `/v2/slow/${name}/blobs/${digest}`)).status).to.equal(200);
  return digest;
}

describe('pull-through cache: replicas', function () {
  this.timeout(120_000);
  let upstream: TestDistribution;
  /** In front of the upstream for the mirror "slow": holds a blob's body back while the test looks. */
  let proxy: FaultProxy;
  let redis: TestRedis;
  let dataDir: string;
  let env: Record<string, string>;
  let replicas: TestBerth[] = [];

  before(async () => {
    upstream = await startDistribution();
    proxy = await startFaultProxy(upstream.url);
    redis = await startRedis();
    dataDir = mkdtempSync(join(tmpdir(), 'berth-mirror-replicas-'));
    const mirrors = [
      { prefix: 'dist', upstream: upstream.url },
      { prefix: 'slow', upstream: proxy.url },
    ];
    env = { ...mirrorsEnv(mirrors), BERTH_REDIS_URL: redis.url };
    replicas = [await startBerth({ dataDir, env }), await startBerth({ dataDir, env })];
  });
  after(async () => {
    for (const replica of replicas) await replica.stop();
    await redis?.stop();
    await proxy?.close();
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

  it("streams a fill to the other replica's client as storage receives it, before the upstream has sent the whole blob", async () => {
    const [a, b] = replicas as [TestBerth, TestBerth];
    await streamsWhileHeld(upstream, proxy, a.url, b.url, 'team/streamed');
    // B's client was served from A's fill: B counted a hit, not a miss, and linked the blob once stored.
    expect(await metric(new Registry(b.url), 'berth_mirror_requests_total', { mirror: 'slow', outcome: 'miss' })).to.equal(0);
  });

  it("cuts the other replica's client short when the fill fails, and stores nothing", async () => {
    const data = randomBytes(8 * MiB);
    const digest = await new UpstreamRegistry(upstream.url).pushBlob('team/failed', data);
    const hold = release();
    // The first answer is held, then cut; every resumption is cut at once: the fill gives up.
    proxy.rules.push({ match: (m, url) => m === 'GET' && url.includes(digest), fault: { holdAfterBytes: 2 * MiB, until: hold.until, thenCut: true }, remaining: 1 });
    proxy.rules.push({ match: (m, url) => m === 'GET' && url.includes(digest), fault: { cutAfterBytes: 1 }, remaining: 10 });
    const [a, b] = replicas as [TestBerth, TestBerth];
    const filled = hashedGet(`${a.url}/v2/slow/team/failed/blobs/${digest}`);
    await waitFor(() => proxy.holding === 1, 'the upstream to hold the blob back after 2 MiB', 30_000);
    let received = 0;
    const followed = hashedGet(`${b.url}/v2/slow/team/failed/blobs/${digest}`, (bytes) => (received = bytes));
    await waitFor(() => received > 0, "replica B's client to receive its first bytes", 30_000);
    hold.now();

    for (const pull of await Promise.all([filled, followed])) {
      expect(pull.status).to.equal(200);
      expect(pull.complete, 'a body cut short: the client retries').to.equal(false);
      expect(pull.bytes).to.be.below(data.length);
    }
    expect(storedInBerth(a, digest)).to.equal(false);
    const retry = await new Registry(b.url).request('HEAD', `/v2/slow/team/failed/blobs/${digest}`);
    expect(retry.status, 'not cached: a HEAD asks the upstream for the size').to.equal(200);
    expect(storedInBerth(b, digest)).to.equal(false);
  });

  it("cuts the other replica's client short within seconds of the filling replica's death, not after the upstream's timeout", async () => {
    const data = randomBytes(8 * MiB);
    const digest = await new UpstreamRegistry(upstream.url).pushBlob('team/orphaned', data);
    const hold = release();
    proxy.rules.push({ match: (m, url) => m === 'GET' && url.includes(digest), fault: { holdAfterBytes: 2 * MiB, until: hold.until }, remaining: 1 });
    // A third replica fills, and dies while the upstream holds the rest back (the mirror's timeout: 30 s).
    const filler = await startBerth({ dataDir, env });
    try {
      hashedGet(`${filler.url}/v2/slow/team/orphaned/blobs/${digest}`).catch(() => {});
      await waitFor(() => proxy.holding === 1, 'the upstream to hold the blob back after 2 MiB', 30_000);
      let received = 0;
      const followed = hashedGet(`${replicas[1]!.url}/v2/slow/team/orphaned/blobs/${digest}`, (bytes) => (received = bytes));
      await waitFor(() => received > 0, "replica B's client to receive its first bytes", 30_000);
      const died = performance.now();
      filler.process.kill('SIGKILL');
      const pull = await followed;
      const waited = (performance.now() - died) / 1000;
      expect(pull.complete, 'a body cut short: the client retries').to.equal(false);
      expect(pull.bytes).to.be.below(data.length);
      // Its announcements stop: B gives the fill up once the last one is 10 s old, where it used to wait
      // for the upstream's timeout plus 10 s (40 s here), though the filler was gone.
      expect(waited, 'seconds B waited for a dead filler').to.be.below(25);
    } finally {
      hold.now();
      await filler.destroy();
    }
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

describe('pull-through cache: two worker processes (--workers, no Redis)', function () {
  this.timeout(120_000);
  let upstream: TestDistribution;
  let proxy: FaultProxy;
  let berth: TestBerth;

  before(async () => {
    upstream = await startDistribution();
    proxy = await startFaultProxy(upstream.url);
    berth = await startBerth({ env: { ...mirrorsEnv([{ prefix: 'slow', upstream: proxy.url }]), BERTH_WORKERS: '2' } });
    await waitFor(() => new Set(berth.logs.filter((l) => l.includes('berth is serving')).map((l) => JSON.parse(l).pid)).size === 2, 'two workers to serve', 30_000);
  });
  after(async () => {
    await berth?.destroy();
    await proxy?.close();
    await upstream?.stop();
  });

  it("streams one worker's fill to a client of the other worker (the primary relays the announcements)", async () => {
    const digest = await streamsWhileHeld(upstream, proxy, berth.url, berth.url, 'team/workers');
    // The primary deals connections to the workers in turn: the two GETs were answered by different workers.
    const gets = () => berth.logs.filter((l) => l.includes(`"path":"/v2/slow/team/workers/blobs/${digest}"`) && l.includes('"method":"GET"'));
    await waitFor(() => gets().length === 2, 'both GETs in the request log', 10_000);
    expect(new Set(gets().map((l) => JSON.parse(l).pid)).size).to.equal(2);
  });
});
