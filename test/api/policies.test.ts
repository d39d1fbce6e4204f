// Lifecycle policies and garbage collection through the HTTP API and the berth command, against a real
// server (on disk, and again on S3 + Redis through api-on-s3.test.ts).
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, useBerth, type TestBerth } from '../helpers/berth.ts';
import { berthCommand, berthJson } from '../helpers/berth-command.ts';
import { errorCode, OCI_MANIFEST, Registry, sha256 } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

function blobPath(digest: string): string {
  return `/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`;
}

async function storedBlobCount(berth: TestBerth, digests: string[]): Promise<number> {
  let count = 0;
  for (const digest of digests) if (await berth.storage.stat(blobPath(digest))) count++;
  return count;
}

describe('lifecycle policies: immutable tags and quotas', () => {
  const server = useBerth();
  const registry = server.registry;

  it('an immutable tag is never moved nor deleted; other tags move; the policy is managed by berth policy', async () => {
    await berthCommand(server.berth, ['policy', 'set', 'immut', JSON.stringify({ immutableTags: ['v*'] })]);
    const first = await registry.pushImage('immut/app', 'v1.0', { layers: ['first'] });
    await registry.pushImage('immut/app', 'latest', { layers: ['first'] });

    // Pushing the same manifest again is no move.
    expect((await registry.putManifest('immut/app', 'v1.0', first.manifest, OCI_MANIFEST)).status).to.equal(201);

    const second = await registry.pushImage('immut/app', 'scratch', { layers: ['second'] });
    const moved = await registry.putManifest('immut/app', 'v1.0', second.manifest, OCI_MANIFEST);
    expect(moved.status).to.equal(403);
    expect(errorCode(moved)).to.equal('DENIED');
    expect(moved.json.errors[0].message).to.equal('tag v1.0 of immut/app is immutable: it cannot be moved to another manifest');
    expect(moved.json.errors[0].detail).to.deep.include({ tag: 'v1.0', current: first.digest });
    expect((await registry.request('HEAD', '/v2/immut/app/manifests/v1.0')).headers['docker-content-digest']).to.equal(first.digest);

    const deleteTag = await registry.request('DELETE', '/v2/immut/app/manifests/v1.0');
    expect(deleteTag.status).to.equal(403);
    expect(deleteTag.json.errors[0].message).to.include('immutable');
    const deleteManifest = await registry.request('DELETE', `/v2/immut/app/manifests/${first.digest}`);
    expect(deleteManifest.status).to.equal(403);
    expect((await registry.request('GET', '/v2/immut/app/tags/list')).json.tags).to.include('v1.0');

    // A tag no pattern matches moves as always.
    expect((await registry.putManifest('immut/app', 'latest', second.manifest, OCI_MANIFEST)).status).to.equal(201);

    const shown = await berthJson(server.berth, ['policy', 'show', 'immut']);
    expect(shown).to.deep.equal({ scope: 'immut', policy: { immutableTags: ['v*'] } });
    await berthCommand(server.berth, ['policy', 'rm', 'immut']);
    expect((await registry.putManifest('immut/app', 'v1.0', second.manifest, OCI_MANIFEST)).status).to.equal(201);
  });

  it('berth policy refuses an invalid policy with a message and exit code 2', async () => {
    const bad = await berthCommand(server.berth, ['policy', 'set', 'ns/app', '{"quotaBytes":5}'], { allowFailure: true });
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include('quotas are set per namespace: use ns, not ns/app');
    const notJson = await berthCommand(server.berth, ['policy', 'set', 'ns', '{'], { allowFailure: true });
    expect(notJson.code).to.equal(2);
    expect(notJson.stderr).to.include('not valid JSON');
    const badScope = await berthCommand(server.berth, ['policy', 'set', '../etc', '{}'], { allowFailure: true });
    expect(badScope.code).to.equal(1);
    expect(badScope.stderr).to.include('is not a repository or namespace name');
  });

  it('berth policy set and rm are audited, as the admin API\'s changes are, with the operator who ran them', async () => {
    const audited = (stderr: string) =>
      stderr.split('\n').flatMap((line) => {
        try {
          const audit = (JSON.parse(line) as { audit?: { who: string; action: string; allowed: boolean; repository?: string; reason?: string } }).audit;
          return audit ? [audit] : [];
        } catch {
          return [];
        }
      });
    const set = await berthCommand(server.berth, ['policy', 'set', 'audited', JSON.stringify({ immutableTags: ['v*'] })]);
    expect(JSON.parse(set.stdout)).to.deep.equal({ scope: 'audited', policy: { immutableTags: ['v*'] } });
    expect(audited(set.stderr)).to.deep.equal([{ who: process.env.USER ?? 'admin', action: 'policy set', allowed: true, repository: 'audited', reason: 'admin command' }]);
    const removed = await berthCommand(server.berth, ['policy', 'rm', 'audited']);
    expect(audited(removed.stderr).map((a) => [a.action, a.allowed, a.repository])).to.deep.equal([['policy rm', true, 'audited']]);
    const again = await berthCommand(server.berth, ['policy', 'rm', 'audited'], { allowFailure: true });
    expect(again.code).to.equal(2);
    expect(again.stderr).to.include('audited has no policy');
  });

  it('a push past the namespace quota is refused with DENIED, usage and limit, and stores nothing', async () => {
    await berthCommand(server.berth, ['policy', 'set', 'quota', JSON.stringify({ quotaBytes: 1000 })]);
    const first = Buffer.alloc(600, 1);
    await registry.pushBlob('quota/a', first);
    // The same blob in another repository of the namespace is counted once.
    await registry.pushBlob('quota/b', first);

    const big = Buffer.alloc(500, 2);
    const monolithic = await registry.request('POST', `/v2/quota/a/blobs/uploads/?digest=${sha256(big)}`, { body: big });
    expect(monolithic.status).to.equal(403);
    expect(errorCode(monolithic)).to.equal('DENIED');
    expect(monolithic.json.errors[0].message).to.equal('the quota of namespace quota would be exceeded');
    expect(monolithic.json.errors[0].detail).to.deep.equal({ namespace: 'quota', usageBytes: 600, limitBytes: 1000, requestedBytes: 500 });

    // Chunked: the chunk is refused from its Content-Length, before its bytes are stored.
    const location = await registry.startUpload('quota/a');
    const chunk = await registry.request('PATCH', location, { body: big });
    expect(chunk.status).to.equal(403);
    expect(chunk.json.errors[0].detail).to.include({ usageBytes: 600, limitBytes: 1000 });
    expect((await registry.request('GET', location)).headers.range).to.equal('0-0');
    const put = await registry.request('PUT', `${location}?digest=${sha256(big)}`, { body: big });
    expect(put.status).to.equal(403);
    expect((await registry.request('DELETE', location)).status).to.equal(204);

    // A mount of a blob new to the namespace counts too.
    const elsewhere = await registry.pushBlob('other/app', big);
    const mount = await registry.request('POST', `/v2/quota/a/blobs/uploads/?mount=${elsewhere}&from=other/app`);
    expect(mount.status).to.equal(403);
    expect(errorCode(mount)).to.equal('DENIED');

    // Nothing of the refused pushes is stored: no blob data here, no link, no session left.
    expect(await server.berth.storage.list('/repositories/quota/a/_layers/sha256')).to.deep.equal([`/repositories/quota/a/_layers/sha256/${sha256(first).slice(7)}`]);
    expect(await server.berth.storage.list('/repositories/quota/a/_uploads')).to.deep.equal([]);
    expect(await server.berth.storage.list('/uploads')).to.deep.equal([]);
    expect((await registry.request('HEAD', `/v2/quota/a/blobs/${elsewhere}`)).status).to.equal(404);

    // What fits still goes in; and the usage is shown with the policy.
    await registry.pushBlob('quota/a', Buffer.alloc(400, 3));
    const shown = await berthJson(server.berth, ['policy', 'show', 'quota']);
    expect(shown).to.deep.equal({ scope: 'quota', policy: { quotaBytes: 1000 }, usageBytes: 1000 });
    const full = await registry.request('POST', `/v2/quota/b/blobs/uploads/?digest=${sha256('x')}`, { body: 'x' });
    expect(full.status).to.equal(403);
  });

  it('concurrent pushes that each fit but together pass the quota: the first admitted stays, the others are refused', async () => {
    await berthCommand(server.berth, ['policy', 'set', 'racing', JSON.stringify({ quotaBytes: 1000 })]);
    const blobs = Array.from({ length: 6 }, (_, i) => Buffer.alloc(600, i + 1));
    // Five uploads whose bytes are all in (each within the quota alone), then their completions and a mount
    // all at once: every one of them would pass a check made before the others are linked.
    const sessions: string[] = [];
    for (const [i, blob] of blobs.slice(0, 5).entries()) {
      const chunk = await registry.request('PATCH', await registry.startUpload(`racing/c${i}`), { body: blob, headers: { 'Content-Range': `0-${blob.length - 1}` } });
      expect(chunk.status).to.equal(202);
      sessions.push(`${chunk.headers.location}?digest=${sha256(blob)}`);
    }
    const mounted = await registry.pushBlob('elsewhere/app', blobs[5]!);
    const replies = await Promise.all([
      ...sessions.map((session) => registry.request('PUT', session)),
      registry.request('POST', `/v2/racing/m/blobs/uploads/?mount=${mounted}&from=elsewhere/app`),
    ]);
    const statuses = replies.map((r) => r.status);
    expect(statuses.filter((s) => s === 201), statuses.join(' ')).to.have.length(1);
    for (const refused of replies.filter((r) => r.status !== 201)) {
      expect(refused.status).to.equal(403);
      expect(errorCode(refused)).to.equal('DENIED');
    }
    const shown = await berthJson(server.berth, ['policy', 'show', 'racing']);
    expect(shown.usageBytes).to.equal(600);
  });
});

describe('garbage collection through the server and the berth command', () => {
  it('berth gc --dry-run changes nothing; berth gc frees the unreachable blobs; tagged images still pull', async () => {
    const berth = await startBerth();
    try {
      const registry = new Registry(berth.url);
      const kept = await registry.pushImage('gc/app', 'keep', { layers: ['shared', 'kept only'], config: { kept: true } });
      const dropped = await registry.pushImage('gc/app', 'drop', { layers: ['shared', 'dropped only'], config: { kept: false } });
      expect((await registry.request('DELETE', `/v2/gc/app/manifests/${dropped.digest}`)).status).to.equal(202);
      const unreachable = [dropped.digest, dropped.config, dropped.layers[1]!].sort();
      if (!berth.storageEnv.BERTH_REDIS_URL) {
        // Without Redis the server's locks and caches are its own: a collection from another process that
        // cannot hand it to the server (no control socket answers) is refused while it serves (a dry run
        // is not), and removes nothing.
        const refused = await berthCommand(berth, ['gc', '--grace-seconds', '0'], { allowFailure: true, env: { BERTH_CONTROL_SOCKET: 'none' } });
        expect(refused.code).to.equal(2);
        expect(refused.stderr).to.match(/a server without Redis uses this storage \(pid \d+ on .*no server answers on this machine's control socket/);
        expect(await storedBlobCount(berth, unreachable)).to.equal(3);
        expect((await berthJson(berth, ['gc', '--dry-run', '--grace-seconds', '0'])).dryRun).to.equal(true);
      }
      await berth.stop();

      const dry = await berthJson(berth, ['gc', '--dry-run', '--grace-seconds', '0']);
      expect(dry.dryRun).to.equal(true);
      expect(dry.blobsRemoved.map((b: { digest: string }) => b.digest).sort()).to.deep.equal(unreachable);
      expect(await storedBlobCount(berth, unreachable)).to.equal(3);

      // Links made in the last second count as in use: the run comes after that.
      const link = await berth.storage.stat(`/repositories/gc/app/_layers/sha256/${dropped.layers[1]!.slice(7)}`);
      await waitFor(() => Date.now() - link!.modifiedAt.getTime() > 2100, 'the links to be older than the slack', 5000);
      const run = await berthCommand(berth, ['gc', '--grace-seconds', '0']);
      const report = JSON.parse(run.stdout);
      expect(report.blobsRemoved.map((b: { digest: string }) => b.digest).sort()).to.deep.equal(unreachable);
      expect(report.bytesFreed).to.equal(dry.bytesFreed);
      expect(await storedBlobCount(berth, unreachable)).to.equal(0);

      await berth.restart();
      const manifest = await registry.request('GET', '/v2/gc/app/manifests/keep');
      expect(manifest.headers['docker-content-digest']).to.equal(kept.digest);
      for (const [digest, content] of [[kept.layers[0], 'shared'], [kept.layers[1], 'kept only']] as const) {
        expect((await registry.request('GET', `/v2/gc/app/blobs/${digest}`)).text).to.equal(content);
      }
      expect((await registry.request('HEAD', `/v2/gc/app/blobs/${dropped.layers[1]}`)).status).to.equal(404);
    } finally {
      await berth.destroy();
    }
  });

  for (const workers of ['1', '2']) {
    it(`berth gc and berth retention run beside a running server are run by it (control socket; ${workers} worker${workers === '1' ? '' : 's'}); the admin API shows and starts collections`, async () => {
      const berth = await startBerth({ env: { BERTH_WORKERS: workers, BERTH_GC_INTERVAL_SECONDS: '3600' } });
      try {
        const registry = new Registry(berth.url);
        const kept = await registry.pushImage('beside/app', 'keep', { layers: ['shared beside', 'kept beside'], config: { kept: true } });
        const dropped = await registry.pushImage('beside/app', 'drop', { layers: ['shared beside', 'dropped beside'], config: { kept: false } });
        expect((await registry.request('DELETE', `/v2/beside/app/manifests/${dropped.digest}`)).status).to.equal(202);
        const unreachable = [dropped.digest, dropped.config, dropped.layers[1]!].sort();
        // The socket is the server's, and only its user may open it.
        const socket = statSync(join(berth.storageEnv.BERTH_DATA!, 'control.sock'));
        expect(socket.isSocket()).to.equal(true);
        expect(socket.mode & 0o777).to.equal(0o600);

        const dry = await berthJson(berth, ['gc', '--dry-run', '--grace-seconds', '0']);
        expect(dry.dryRun).to.equal(true);
        expect(await storedBlobCount(berth, unreachable)).to.equal(3);
        const link = await berth.storage.stat(`/repositories/beside/app/_layers/sha256/${dropped.layers[1]!.slice(7)}`);
        await waitFor(() => Date.now() - link!.modifiedAt.getTime() > 2100, 'the links to be older than the slack', 5000);
        // The same report as a run from the command itself: every removed blob, listed.
        const report = await berthJson(berth, ['gc', '--grace-seconds', '0']);
        expect(report.dryRun).to.equal(false);
        expect(report.blobsRemoved.map((b: { digest: string }) => b.digest).sort()).to.deep.equal(unreachable);
        expect(await storedBlobCount(berth, unreachable)).to.equal(0);
        // The server that ran it serves at once what is left, and nothing of what went.
        expect((await registry.request('HEAD', `/v2/beside/app/blobs/${dropped.layers[1]}`)).status).to.equal(404);
        expect((await registry.request('GET', `/v2/beside/app/blobs/${kept.layers[1]}`)).text).to.equal('kept beside');
        expect((await registry.request('GET', '/v2/beside/app/manifests/keep')).headers['docker-content-digest']).to.equal(kept.digest);
        expect(await berthJson(berth, ['retention', 'run'])).to.deep.equal([]);

        // The admin API: the last run (the one above), the next one an interval after it; POST starts one.
        const shown = (await registry.request('GET', '/api/v1/admin/gc')).json;
        expect(shown.last.summary.blobsRemoved).to.equal(3);
        expect(Date.parse(shown.next) - Date.parse(shown.last.finishedAt)).to.equal(3600_000);
        const started = await registry.request('POST', '/api/v1/admin/gc');
        expect(started.status).to.equal(202);
        await waitFor(async () => {
          const now = (await registry.request('GET', '/api/v1/admin/gc')).json;
          return now.last.finishedAt !== shown.last.finishedAt && now.running === false;
        }, 'the collection the API started to finish', 20_000);
        expect((await registry.request('GET', '/api/v1/admin/gc')).json.last.summary.blobsRemoved).to.equal(0);
      } finally {
        await berth.destroy();
      }
    });
  }

  it('the server applies retention and collects garbage on its schedule, while the kept images keep serving', async () => {
    const berth = await startBerth({
      env: {
        BERTH_RETENTION_INTERVAL_SECONDS: '1',
        BERTH_GC_INTERVAL_SECONDS: '1',
        BERTH_GC_GRACE_SECONDS: '0',
        BERTH_GC_DELETE_UNTAGGED: 'true',
      },
    });
    try {
      const registry = new Registry(berth.url);
      const old = await registry.pushImage('sched/app', 'old', { layers: ['old layer'], config: { old: true } });
      const current = await registry.pushImage('sched/app', 'stable', { layers: ['stable layer'] });
      await berthCommand(berth, ['policy', 'set', 'sched', JSON.stringify({ retention: { keepTags: ['stable'] } })]);

      await waitFor(async () => (await registry.request('GET', '/v2/sched/app/tags/list')).json.tags.length === 1, 'retention to delete the old tag', 15_000);
      expect((await registry.request('GET', '/v2/sched/app/tags/list')).json.tags).to.deep.equal(['stable']);
      await waitFor(async () => (await storedBlobCount(berth, [old.digest, old.config, old.layers[0]!])) === 0, 'the old image to be collected', 20_000);
      expect((await registry.request('GET', `/v2/sched/app/manifests/${old.digest}`)).status).to.equal(404);
      expect((await registry.request('GET', `/v2/sched/app/blobs/${old.layers[0]}`)).status).to.equal(404);

      expect((await registry.request('GET', '/v2/sched/app/manifests/stable')).headers['docker-content-digest']).to.equal(current.digest);
      expect((await registry.request('GET', `/v2/sched/app/blobs/${current.layers[0]}`)).text).to.equal('stable layer');
      const logged = () => berth.logs.map((l) => JSON.parse(l) as { msg?: string; blobsRemoved?: number; deleted?: string[] });
      expect(logged().some((e) => e.msg === 'retention deleted tags' && e.deleted?.includes('sched/app:old'))).to.equal(true);
      // A run logs when it ends, after its deletions: the line may still be on its way. The three blobs of
      // the old image may go in one run or over several.
      const removed = () => logged().filter((e) => e.msg === 'garbage collection done').reduce((sum, e) => sum + (e.blobsRemoved ?? 0), 0);
      await waitFor(() => removed() >= 3, 'the collections to report the removed blobs', 10_000);
    } finally {
      await berth.destroy();
    }
  });
});
