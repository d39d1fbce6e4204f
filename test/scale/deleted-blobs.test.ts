// A deleted blob is served from no cache afterwards: not from a worker's or a replica's memory (also when
// the delete could not be announced through Redis), and not from an HTTP cache in front of Berth.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { useBerth } from '../helpers/berth.ts';
import { useReplicas } from '../helpers/replicas.ts';
import { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

const run = promisify(execFile);

describe('a deleted blob, with two worker processes (no Redis)', () => {
  const suite = useBerth({ env: { BERTH_WORKERS: '2' } });
  const registry = suite.registry;

  it('is 404 on GET and HEAD from every worker at once, though each had it cached', async () => {
    await waitFor(() => new Set(suite.berth.logs.filter((l) => l.includes('berth is serving')).map((l) => JSON.parse(l).pid)).size === 2, 'two workers');
    const digest = await registry.pushBlob('workers/deleted', 'cached by both workers, then deleted');
    const path = `/v2/workers/deleted/blobs/${digest}`;
    // A connection per request: the primary deals them to the workers in turn.
    for (let i = 0; i < 6; i++) expect((await registry.request(i % 2 ? 'GET' : 'HEAD', path)).status).to.equal(200);
    const answeredBy = new Set(suite.berth.logs.map((l) => JSON.parse(l)).filter((e) => e.msg === 'request' && e.path === path).map((e) => e.pid));
    expect(answeredBy.size, 'both workers served (and cached) it').to.equal(2);

    expect((await registry.request('DELETE', path)).status).to.equal(202);
    for (let i = 0; i < 6; i++) {
      expect((await registry.request('HEAD', path)).status, `HEAD ${i}`).to.equal(404);
      expect((await registry.request('GET', path)).status, `GET ${i}`).to.equal(404);
    }
  });
});

describe('a deleted blob and HTTP caches in front of Berth', () => {
  const { registry } = useBerth();

  it('GET and HEAD let caches keep a blob only if they ask again, and asking again after the DELETE is a 404, not a 304', async () => {
    const digest = await registry.pushBlob('http/cached', 'kept by a proxy cache');
    const path = `/v2/http/cached/blobs/${digest}`;
    for (const method of ['GET', 'HEAD']) {
      const res = await registry.request(method, path);
      expect(res.status).to.equal(200);
      expect(res.headers['cache-control'], method).to.equal('no-cache');
      expect(res.headers.etag).to.equal(`"${digest}"`);
    }
    expect((await registry.request('GET', path, { headers: { 'If-None-Match': `"${digest}"` } })).status).to.equal(304);
    expect((await registry.request('DELETE', path)).status).to.equal(202);
    expect((await registry.request('GET', path, { headers: { 'If-None-Match': `"${digest}"` } })).status).to.equal(404);
  });
});

describe('a deleted blob, with two replicas sharing storage and Redis', () => {
  const replicas = useReplicas();

  const redisConfig = (key: string, value: string) => run('redis-cli', ['-p', String(replicas.redis.port), 'CONFIG', 'SET', key, value]);

  it('a DELETE that cannot announce itself (Redis refuses writes) unlinks nothing, so no replica serves a stale size afterwards', async () => {
    const ra = new Registry(replicas.a.url);
    const rb = new Registry(replicas.b.url);
    const digest = await ra.pushBlob('replicas/deleted', 'cached by b, deleted through a');
    const path = `/v2/replicas/deleted/blobs/${digest}`;
    const link = join(replicas.dataDir, 'repositories', 'replicas', 'deleted', '_layers', 'sha256', digest.slice(7));
    for (let i = 0; i < 2; i++) expect((await rb.request('HEAD', path)).status).to.equal(200);

    // Redis answers reads but refuses every write: the generation cannot be bumped.
    await redisConfig('maxmemory', '1');
    let refused;
    try {
      refused = await ra.request('DELETE', path);
    } finally {
      await redisConfig('maxmemory', '0');
    }
    expect(refused.status, refused.text).to.equal(503);
    const served = await rb.request('HEAD', path);
    expect(served.status, 'b answers what storage holds').to.equal(existsSync(link) ? 200 : 404);
    expect(existsSync(link), 'a refused DELETE changed nothing').to.equal(true);

    expect((await ra.request('DELETE', path)).status).to.equal(202);
    expect((await rb.request('HEAD', path)).status).to.equal(404);
    expect((await rb.request('GET', path)).status).to.equal(404);
  });
});
