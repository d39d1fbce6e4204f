import { expect } from 'chai';
import { useBerth } from '../helpers/berth.ts';
import { OCI_MANIFEST, sha256 } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

describe('berth serve with two worker processes on one port (no Redis)', () => {
  const suite = useBerth({ env: { BERTH_WORKERS: '2' } });
  const registry = suite.registry;

  it('runs two workers that both serve', async () => {
    const pids = await waitFor(() => {
      const serving = suite.berth.logs.map((l) => JSON.parse(l)).filter((e) => e.msg === 'berth is serving');
      const set = new Set(serving.map((e) => e.pid));
      return set.size === 2 ? set : undefined;
    }, 'two workers to serve');
    expect(pids.size).to.equal(2);
    // Each request opens a new connection; the primary deals connections round-robin.
    for (let i = 0; i < 10; i++) expect((await registry.request('GET', '/v2/')).status).to.equal(200);
    const answeredBy = await waitFor(() => {
      const entries = suite.berth.logs.map((l) => JSON.parse(l)).filter((e) => e.msg === 'request' && e.path === '/v2/');
      return entries.length >= 10 ? new Set(entries.map((e) => e.pid)) : undefined;
    }, 'the request logs');
    expect([...answeredBy].sort()).to.deep.equal([...pids].sort());
  });

  it('a tag moved through one worker is served moved by every worker', async () => {
    await registry.pushImage('workers/app', 'v1', { layers: ['one'] });
    for (let i = 0; i < 4; i++) await registry.request('GET', '/v2/workers/app/manifests/v1');
    const second = await registry.pushImage('workers/app', 'v1', { layers: ['two'] });
    for (let i = 0; i < 6; i++) {
      const res = await registry.request('GET', '/v2/workers/app/manifests/v1');
      expect(res.headers['docker-content-digest'], `request ${i}`).to.equal(second.digest);
    }
  });

  it('an upload spread over both workers completes, and concurrent chunks never interleave', async () => {
    const blob = Buffer.from('0123456789'.repeat(1000));
    const location = await registry.startUpload('workers/app');
    for (let start = 0; start < blob.length; start += 1000) {
      const res = await registry.request('PATCH', location, {
        body: blob.subarray(start, start + 1000),
        headers: { 'Content-Range': `${start}-${start + 999}` },
      });
      expect(res.status).to.equal(202);
    }
    expect((await registry.request('PUT', `${location}?digest=${sha256(blob)}`)).status).to.equal(201);
    const race = await registry.startUpload('workers/app');
    const results = await Promise.all(
      ['a', 'b', 'c', 'd', 'e', 'f'].map((c) => registry.request('PATCH', race, { body: c.repeat(100), headers: { 'Content-Range': '0-99' } })),
    );
    expect(results.filter((r) => r.status === 202)).to.have.length(1);
    expect((await registry.request('GET', race)).headers.range).to.equal('0-99');
  });

  it('/metrics counts the requests of every worker', async () => {
    const image = await registry.pushImage('workers/metrics', 'v1');
    for (let i = 0; i < 20; i++) await registry.request('HEAD', `/v2/workers/metrics/manifests/${image.digest}`, { headers: { Accept: OCI_MANIFEST } });
    const res = await registry.request('GET', '/metrics');
    expect(res.text).to.match(/berth_http_requests_total\{method="HEAD",route="manifest",status="200"\} 20\b/);
  });

  it('SIGTERM stops both workers and the primary cleanly', async () => {
    const exited = new Promise<number | null>((r) => suite.berth.process.once('exit', (code) => r(code)));
    suite.berth.process.kill('SIGTERM');
    expect(await exited).to.equal(0);
  });
});

describe('a rate limit with two workers and no Redis', () => {
  const suite = useBerth({ env: { BERTH_WORKERS: '2', BERTH_RATE_LIMIT_PER_MINUTE: '6' } });

  it('counts in the primary, so the limit holds for the machine, not per worker', async () => {
    // New connections go to the workers in turn: six requests reach both.
    for (let i = 0; i < 6; i++) expect((await suite.registry.request('GET', '/v2/')).status, `request ${i + 1}`).to.equal(200);
    for (let i = 0; i < 2; i++) expect((await suite.registry.request('GET', '/v2/')).status).to.equal(429);
  });
});
