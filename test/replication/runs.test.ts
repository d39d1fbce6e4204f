// How a run meets trouble, against real registries behind a fault-injecting proxy: 429 with Retry-After
// is waited out, a refusal that will not change and a full destination stop the run with the reason in
// its status, a second run of a busy rule is refused, and a run whose server was killed midway is
// resumed by the restarted server without fetching again the blobs it had finished.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { Registry, sha256 } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { UpstreamRegistry } from '../mirror/helpers.ts';
import { addRule, manifestBytes, ruleStatus, runRule, waitForRun } from './helpers.ts';

const QUICK = { BERTH_REPLICATION_TICK_SECONDS: '1', BERTH_REPLICATION_STALE_SECONDS: '3', BERTH_REPLICATION_RETRY_BASE_MS: '50', BERTH_REPLICATION_RETRY_MAX_MS: '5000' };

describe('replication: runs that meet trouble', function () {
  this.timeout(60_000);
  let source: TestDistribution;
  let proxy: FaultProxy;
  let here: TestBerth;
  const local = new Registry('http://127.0.0.1:0');

  before(async () => {
    [source, here] = await Promise.all([startDistribution(), startBerth({ env: QUICK })]);
    proxy = await startFaultProxy(source.url);
    local.base = here.url;
    await new UpstreamRegistry(source.url).pushImage('team/app', 'v1', { layers: ['first layer', 'second layer'] });
  });
  after(() => Promise.all([here?.destroy(), proxy?.close(), source?.stop()]));
  afterEach(() => void (proxy.rules = []));

  const rule = (name: string) => ({ name, direction: 'pull', remote: { url: proxy.url }, repositories: ['team/app'], destination: name });

  it('waits out a 429 for the Retry-After it names, then copies', async () => {
    await addRule(local, rule('patient'));
    proxy.rules = [{ match: (m, url) => m === 'HEAD' && url === '/v2/team/app/manifests/v1', fault: { status: 429, code: 'TOOMANYREQUESTS', headers: { 'Retry-After': '1' } }, remaining: 1 }];
    const from = proxy.requests.length;
    const run = await runRule(local, 'patient');
    expect(run).to.include({ outcome: 'succeeded', copied: 1 });
    const heads = proxy.requests.slice(from).filter((r) => r.method === 'HEAD' && r.url === '/v2/team/app/manifests/v1');
    expect(heads).to.have.length(2);
    expect(heads[1]!.at - heads[0]!.at).to.be.at.least(950);
  });

  it('backs off from a 5xx that lasts, doubling its wait, and stops as unavailable once its attempts are used', async () => {
    await addRule(local, rule('down'));
    proxy.rules = [{ match: (m, url) => m === 'HEAD' && url === '/v2/team/app/manifests/v1', fault: { status: 503, code: 'UNAVAILABLE' }, remaining: 100 }];
    const from = proxy.requests.length;
    const run = await runRule(local, 'down');
    expect(run).to.include({ outcome: 'stopped', reason: 'unavailable' });
    const heads = proxy.requests.slice(from).filter((r) => r.method === 'HEAD' && r.url === '/v2/team/app/manifests/v1');
    expect(heads, 'BERTH_REPLICATION_MAX_ATTEMPTS (5) tries').to.have.length(5);
    const waits = heads.slice(1).map((h, i) => h.at - heads[i]!.at);
    // 50 ms, then doubling (BERTH_REPLICATION_RETRY_BASE_MS=50): each wait at least the one before.
    expect(waits[0]).to.be.at.least(45);
    expect(waits[3]).to.be.at.least(350);
  });

  it('resumes with Range a blob whose connection the remote cut, instead of fetching it again whole', async () => {
    const layer = randomBytes(3 * 1024 * 1024).toString('base64'); // 4 MiB
    const { layers } = await new UpstreamRegistry(source.url).pushImage('team/cut', 'v1', { layers: [layer] });
    const digest = layers[0]!;
    await addRule(local, { ...rule('ranged'), repositories: ['team/cut'] });
    // The first two answers for the layer are cut after 1 MiB of body each.
    proxy.rules = [{ match: (m, url) => m === 'GET' && url === `/v2/team/cut/blobs/${digest}`, fault: { cutAfterBytes: 1024 * 1024 }, remaining: 2 }];
    const from = proxy.requests.length;
    const run = await runRule(local, 'ranged');
    expect(run).to.include({ outcome: 'succeeded', copied: 1 });
    const gets = proxy.requests.slice(from).filter((r) => r.method === 'GET' && r.url === `/v2/team/cut/blobs/${digest}`);
    expect(gets.map((g) => g.range === undefined), 'a GET, then two Range GETs').to.deep.equal([true, false, false]);
    const [second, third] = gets.slice(1).map((g) => Number(/^bytes=(\d+)-$/.exec(g.range ?? '')?.[1]));
    // Each from where the bytes had stopped: at most the MiB each cut answer let through, never from 0.
    expect(second).to.be.greaterThan(0).and.at.most(1024 * 1024);
    expect(third).to.be.greaterThan(second!).and.at.most(second! + 1024 * 1024);
    const stored = await local.request('GET', `/v2/ranged/team/cut/blobs/${digest}`);
    expect(stored.status).to.equal(200);
    expect(sha256(stored.body)).to.equal(digest);
  });

  it('fetches a cut blob again whole when the remote answers its Range with the whole blob, and the run succeeds', async () => {
    const layer = randomBytes(3 * 1024 * 1024).toString('base64');
    const { layers } = await new UpstreamRegistry(source.url).pushImage('team/norange', 'v1', { layers: [layer] });
    const path = `/v2/team/norange/blobs/${layers[0]}`;
    await addRule(local, { ...rule('whole'), repositories: ['team/norange'] });
    proxy.rules = [
      { match: (m, url) => m === 'GET' && url === path, fault: { cutAfterBytes: 1024 * 1024 }, remaining: 1 },
      { match: (m, url) => m === 'GET' && url === path, fault: 'ignoreRange', remaining: 1 },
    ];
    const from = proxy.requests.length;
    const run = await runRule(local, 'whole');
    expect(run).to.include({ outcome: 'succeeded', copied: 1 });
    const gets = proxy.requests.slice(from).filter((r) => r.method === 'GET' && r.url === path);
    expect(gets.map((g) => g.range === undefined), 'cut, a Range answered 200, then the whole blob again').to.deep.equal([true, false, true]);
    expect(sha256((await local.request('GET', `/v2/whole${path.slice(3)}`)).body)).to.equal(layers[0]);
  });

  it('stops at a refusal that asking again will not change, and says so in its status', async () => {
    await addRule(local, rule('refused'));
    proxy.rules = [{ match: (_m, url) => url.startsWith('/v2/team/app/tags/list'), fault: { status: 403, code: 'DENIED' }, remaining: 100 }];
    const from = proxy.requests.length;
    const run = await runRule(local, 'refused');
    expect(run).to.include({ outcome: 'stopped', reason: 'refused' });
    expect(run.message).to.include('403');
    expect(proxy.requests.slice(from).filter((r) => r.url.startsWith('/v2/team/app/tags/list')), 'asked once').to.have.length(1);
    expect((await ruleStatus(local, 'refused')).last).to.include({ outcome: 'stopped', reason: 'refused' });
  });

  it('stops when the destination is full (507), without retrying', async () => {
    const there = await startBerth();
    const full = await startFaultProxy(there.url);
    try {
      await local.pushImage('out/app', 'v1', { layers: ['layer to push'] });
      full.rules = [{ match: (m, url) => (m === 'PUT' || m === 'POST') && url.includes('/blobs/uploads/'), fault: { status: 507, code: 'InsufficientStorage' }, remaining: 100 }];
      await addRule(local, { name: 'full', direction: 'push', remote: { url: full.url }, repositories: ['out/app'] });
      const run = await runRule(local, 'full');
      expect(run).to.include({ outcome: 'stopped', reason: 'storage-full' });
      expect(full.injected, 'one refused upload, not retried').to.equal(1);
    } finally {
      await full.close();
      await there.destroy();
    }
  });

  describe('a push of a blob past 64 MiB, in chunks, whose second chunk\'s connection breaks', function () {
    const chunk = 64 * 1024 * 1024;
    const layer = randomBytes(54 * 1024 * 1024).toString('base64'); // 72 MiB
    let digest: string;
    before(async () => {
      digest = (await local.pushImage('out/big', 'v1', { layers: [layer] })).layers[0]!;
    });

    /** Pushes out/big through a proxy in front of `url` that cuts the second PATCH after 1 MiB; the PATCHes' Content-Ranges. */
    async function pushCut(url: string, name: string): Promise<{ patches: Array<string | undefined>; requests: FaultProxy['requests'] }> {
      const remote = await startFaultProxy(url);
      try {
        const patches = () => remote.requests.filter((r) => r.method === 'PATCH').map((r) => r.contentRange);
        remote.rules = [{ match: (m) => m === 'PATCH' && patches().length === 2, fault: { cutRequestAfterBytes: 1024 * 1024 }, remaining: 1 }];
        await addRule(local, { name, direction: 'push', remote: { url: remote.url }, repositories: ['out/big'] });
        const run = await runRule(local, name, 60_000);
        expect(run, JSON.stringify(run)).to.include({ outcome: 'succeeded', copied: 1 });
        expect(remote.injected, 'the second PATCH was cut').to.equal(1);
        expect(patches().slice(0, 2)).to.deep.equal([`0-${chunk - 1}`, `${chunk}-${layer.length - 1}`]);
        return { patches: patches(), requests: remote.requests };
      } finally {
        await remote.close();
      }
    }

    it('goes on from the offset the registry holds (a Berth: the broken chunk\'s start), never from 0', async () => {
      const there = await startBerth();
      try {
        const { patches, requests } = await pushCut(there.url, 'chunked');
        // The upload's status, then the rest from where the registry stood.
        const after = requests.slice(requests.findIndex((r) => r.contentRange === `${chunk}-${layer.length - 1}`) + 1);
        expect(after[0]).to.include({ method: 'GET' });
        expect(patches.slice(2)).to.deep.equal([`${chunk}-${layer.length - 1}`]);
        const pushed = await new Registry(there.url).request('GET', `/v2/out/big/blobs/${digest}`);
        expect(sha256(pushed.body)).to.equal(digest);
      } finally {
        await there.destroy();
      }
    });

    it('sends chunks of the OCI-Chunk-Min-Length a registry asks for when it is longer than 64 MiB', async () => {
      const minimum = 70 * 1024 * 1024;
      const there = await startBerth({ env: { BERTH_CHUNK_MIN_LENGTH: String(minimum) } });
      const remote = await startFaultProxy(there.url);
      try {
        await addRule(local, { name: 'longer-chunks', direction: 'push', remote: { url: remote.url }, repositories: ['out/big'] });
        expect(await runRule(local, 'longer-chunks', 60_000)).to.include({ outcome: 'succeeded', copied: 1 });
        const patches = remote.requests.filter((r) => r.method === 'PATCH').map((r) => r.contentRange);
        expect(patches).to.deep.equal([`0-${minimum - 1}`, `${minimum}-${layer.length - 1}`]);
        expect(sha256((await new Registry(there.url).request('GET', `/v2/out/big/blobs/${digest}`)).body)).to.equal(digest);
      } finally {
        await remote.close();
        await there.destroy();
      }
    });

    it('sends the blob again whole to a registry that gives the broken upload up (Distribution: 404 BLOB_UPLOAD_INVALID)', async () => {
      const { patches } = await pushCut(source.url, 'chunked-dist');
      expect(patches.slice(2)).to.deep.equal([`0-${chunk - 1}`, `${chunk}-${layer.length - 1}`]);
      const pushed = await new UpstreamRegistry(source.url).request('GET', `/v2/out/big/blobs/${digest}`);
      expect(sha256(pushed.body)).to.equal(digest);
    });
  });

  it('stops when this registry\'s own disk is full (ENOSPC), without retrying, and keeps no partial blob', async () => {
    // A real full disk: Berth's storage on a 2 MiB tmpfs, a source layer of 4 MiB (the suite runs as root, as CI does).
    const dir = mkdtempSync(join(tmpdir(), 'berth-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
    let small: TestBerth | undefined;
    try {
      small = await startBerth({ dataDir: dir, env: QUICK });
      const there = new Registry(small.url);
      const { layers } = await new UpstreamRegistry(source.url).pushImage('team/big', 'v1', { layers: [randomBytes(2 * 1024 * 1024).toString('hex')] });
      await addRule(there, { ...rule('disk-full'), repositories: ['team/big'] });
      const from = proxy.requests.length;
      const run = await runRule(there, 'disk-full');
      expect(run).to.include({ outcome: 'stopped', reason: 'storage-full' });
      expect(proxy.requests.slice(from).filter((r) => r.method === 'GET' && r.url === `/v2/team/big/blobs/${layers[0]}`), 'fetched once, not retried').to.have.length(1);
      expect((await ruleStatus(there, 'disk-full')).last).to.include({ outcome: 'stopped', reason: 'storage-full' });
      expect((await there.request('GET', '/v2/disk-full/team/big/manifests/v1')).status).to.equal(404);
      // The server still answers, and the space the failed copy took is given back.
      expect((await there.request('GET', '/v2/')).status).to.equal(200);
      expect(statfsSync(dir).bfree * statfsSync(dir).bsize).to.be.greaterThan(1024 * 1024);
    } finally {
      await small?.destroy();
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a second run of a rule while one runs, and resumes a run whose server was killed without fetching its finished blobs again', async () => {
    // Blobs of its own: none of them in storage yet (a blob stored for another rule would be mounted, not fetched).
    const pushed = await new UpstreamRegistry(source.url).pushImage('team/resume', 'v1', { layers: ['resume layer one', 'resume layer two'], config: { os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [] }, resume: true } });
    await addRule(local, { ...rule('resumed'), repositories: ['team/resume'] });
    const manifest = JSON.parse(pushed.manifest.toString());
    const [config, first, second] = [manifest.config.digest, manifest.layers[0].digest, manifest.layers[1].digest] as string[];
    proxy.rules = [{ match: (m, url) => m === 'GET' && url === `/v2/team/resume/blobs/${second}`, fault: 'stall', remaining: 1 }];
    const from = proxy.requests.length;
    const injected = proxy.injected;
    const started = await local.request('POST', '/api/v1/replication/rules/resumed/run');
    expect(started.status).to.equal(202);
    await waitFor(() => proxy.injected > injected || undefined, 'the run to reach the second layer', 20_000);
    const again = await local.request('POST', '/api/v1/replication/rules/resumed/run');
    expect(again.status).to.equal(409);
    expect(again.json.errors[0].code).to.equal('RUNNING');

    const exited = new Promise((r) => here.process.once('exit', r));
    here.process.kill('SIGKILL');
    await exited;
    proxy.rules = [];
    await here.restart();
    const status = await ruleStatus(local, 'resumed');
    expect(status.running?.id).to.equal(started.json.id);

    const resumed = await waitForRun(local, 'resumed', undefined, 30_000);
    expect(resumed).to.include({ trigger: 'resume', outcome: 'succeeded', copied: 1 });
    const gets = (digest: string) => proxy.requests.slice(from).filter((r) => r.method === 'GET' && r.url === `/v2/team/resume/blobs/${digest}`).length;
    expect(gets(config), 'the config, finished before the kill').to.equal(1);
    expect(gets(first), 'the first layer, finished before the kill').to.equal(1);
    expect(gets(second), 'the stalled layer, fetched again').to.equal(2);
    expect((await manifestBytes(local, 'resumed/team/resume', 'v1')).body.equals(pushed.manifest)).to.equal(true);
  });
});
