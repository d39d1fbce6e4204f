// Replication rules against real registries: a pull rule copies from CNCF Distribution (its access log
// counts what the source was asked), a push rule copies to a second Berth; digests, indexes with their
// children and referrers arrive byte for byte, and a rerun with nothing changed asks the source one HEAD
// per tag and its digest's referrers.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { OCI_INDEX, Registry } from '../helpers/registry.ts';
import { metric, UpstreamRegistry, upstreamRequests } from '../mirror/helpers.ts';
import { cookiesOf, csrfIn, FORM } from '../helpers/web.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { waitFor } from '../helpers/wait.ts';
import { addRule, manifestBytes, pushIndex, pushReferrer, ruleStatus, runRule } from './helpers.ts';

describe('replication: pull and push rules', function () {
  this.timeout(60_000);
  let source: TestDistribution;
  let origin: UpstreamRegistry;
  let here: TestBerth;
  let there: TestBerth;
  const local = new Registry('http://127.0.0.1:0');
  const remote = new Registry('http://127.0.0.1:0');

  before(async () => {
    [source, here, there] = await Promise.all([startDistribution(), startBerth({ env: { BERTH_REPLICATION_TICK_SECONDS: '0', BERTH_WEBHOOK_ALLOW: '127.0.0.1' } }), startBerth()]);
    origin = new UpstreamRegistry(source.url);
    local.base = here.url;
    remote.base = there.url;
  });
  after(async () => {
    await Promise.all([here?.destroy(), there?.destroy(), source?.stop()]);
  });

  it('pulls the tags a glob picks, byte for byte, and a rerun with nothing changed asks one HEAD per tag and its referrers', async () => {
    const v1 = await origin.pushImage('team/app', 'v1', { layers: ['app v1 layer a', 'app v1 layer b'] });
    const v2 = await origin.pushImage('team/app', 'v2', { layers: ['app v2 layer'] });
    await origin.pushImage('team/app', 'dev', { layers: ['app dev layer'] });
    await addRule(local, { name: 'from-dist', direction: 'pull', remote: { url: source.url }, repositories: ['team/app'], destination: 'copies', tags: { glob: ['v*'] } });

    const first = await runRule(local, 'from-dist');
    expect(first).to.include({ outcome: 'succeeded', copied: 2, skipped: 0, failed: 0 });
    expect(first.bytes).to.be.greaterThan(v1.manifest.length + v2.manifest.length);
    for (const [tag, pushed] of [['v1', v1], ['v2', v2]] as const) {
      const got = await manifestBytes(local, 'copies/team/app', tag);
      expect(got.status).to.equal(200);
      expect(got.body.equals(pushed.manifest), `${tag} byte for byte`).to.equal(true);
      for (const layer of pushed.layers) expect((await local.request('HEAD', `/v2/copies/team/app/blobs/${layer}`)).status).to.equal(200);
    }
    expect((await manifestBytes(local, 'copies/team/app', 'dev')).status, 'a tag the glob does not pick').to.equal(404);

    const before = source.accessLog.length;
    const second = await runRule(local, 'from-dist');
    expect(second).to.include({ outcome: 'succeeded', copied: 0, skipped: 2, failed: 0 });
    const asked = upstreamRequests(source, before).filter((r) => !r.startsWith('GET /v2/team/app/tags/list') && r !== 'GET /v2/');
    // Besides, the digest's referrers: Distribution 2.8 has no referrers API (404), so its fallback tag is looked for.
    const referrersOf = (digest: string) => [`GET /v2/team/app/referrers/${digest}`, `HEAD /v2/team/app/manifests/${digest.replace(':', '-')}`];
    expect(asked.sort()).to.deep.equal(['HEAD /v2/team/app/manifests/v1', 'HEAD /v2/team/app/manifests/v2', ...referrersOf(v1.digest), ...referrersOf(v2.digest)].sort());

    // /metrics counts both runs.
    expect(await metric(local, 'berth_replication_runs_total', { rule: 'from-dist', direction: 'pull', outcome: 'succeeded' })).to.equal(2);
    expect(await metric(local, 'berth_replication_tags_total', { rule: 'from-dist', result: 'copied' })).to.equal(2);
    expect(await metric(local, 'berth_replication_tags_total', { rule: 'from-dist', result: 'skipped' })).to.equal(2);
    expect(await metric(local, 'berth_replication_tags_total', { rule: 'from-dist', result: 'failed' })).to.equal(0);
    expect(await metric(local, 'berth_replication_bytes_total', { rule: 'from-dist' })).to.equal(first.bytes + second.bytes);
  });

  it('pulls only the blobs it lacks: a new tag sharing layers fetches only its new ones', async () => {
    const v3 = await origin.pushImage('team/app', 'v3', { layers: ['app v1 layer a', 'app v3 new layer'] });
    const before = source.accessLog.length;
    const run = await runRule(local, 'from-dist');
    expect(run).to.include({ outcome: 'succeeded', copied: 1, skipped: 2 });
    const blobGets = upstreamRequests(source, before).filter((r) => r.startsWith('GET /v2/team/app/blobs/'));
    // The config and the shared layer are here already: only the new layer comes.
    expect(blobGets).to.deep.equal([`GET /v2/team/app/blobs/${v3.layers[1]}`]);
  });

  it('pushes an index with its children and referrers to another Berth, byte for byte, under the destination namespace', async () => {
    const pushed = await pushIndex(local, 'release/tool', '1.0.0');
    const signature = await pushReferrer(local, 'release/tool', { mediaType: OCI_INDEX, digest: pushed.digest, size: pushed.index.length });
    await addRule(local, { name: 'to-berth', direction: 'push', remote: { url: there.url }, repositories: ['release/*'], destination: 'mirror', tags: { glob: ['1.*'] } });

    const run = await runRule(local, 'to-berth');
    expect(run).to.include({ outcome: 'succeeded', copied: 1, failed: 0 });
    const index = await manifestBytes(remote, 'mirror/release/tool', '1.0.0');
    expect(index.body.equals(pushed.index)).to.equal(true);
    expect(index.digest).to.equal(pushed.digest);
    for (const child of Object.values(pushed.children)) expect((await manifestBytes(remote, 'mirror/release/tool', child)).digest).to.equal(child);
    const referrers = await remote.request('GET', `/v2/mirror/release/tool/referrers/${pushed.digest}`);
    expect(referrers.status).to.equal(200);
    expect(referrers.json.manifests.map((m: any) => m.digest)).to.deep.equal([signature]);

    const again = await runRule(local, 'to-berth');
    expect(again).to.include({ outcome: 'succeeded', copied: 0, skipped: 1 });

    // An attestation pushed after the tag was copied: the tag is unchanged, the next run copies it.
    const attestation = await pushReferrer(local, 'release/tool', { mediaType: OCI_INDEX, digest: pushed.digest, size: pushed.index.length }, 'attestation');
    const later = await runRule(local, 'to-berth');
    expect(later).to.include({ outcome: 'succeeded', copied: 0, skipped: 1, failed: 0 });
    const now = await remote.request('GET', `/v2/mirror/release/tool/referrers/${pushed.digest}`);
    expect(now.json.manifests.map((m: any) => m.digest).sort()).to.deep.equal([signature, attestation].sort());
    expect((await manifestBytes(remote, 'mirror/release/tool', attestation)).digest).to.equal(attestation);
  });

  it('keeps the remote password sealed: never in the API, the CLI or storage in the clear', async () => {
    const password = 'replication-secret-7f3a';
    const added = await addRule(local, { name: 'with-creds', direction: 'pull', remote: { url: source.url, username: 'robot', password }, repositories: ['team/app'], enabled: false });
    expect(JSON.stringify(added)).not.to.include(password);
    expect(added.remote).to.include({ username: 'robot', hasPassword: true });
    const listed = await local.request('GET', '/api/v1/replication/rules');
    expect(listed.text).not.to.include(password);
    expect(readFileSync(join(here.dataDir, 'replication', 'rules.json'), 'utf8')).not.to.include(password);
    const shown = await here.cli(['replication', 'show', 'with-creds']);
    expect(shown.code, shown.stderr).to.equal(0);
    expect(shown.stdout).not.to.include(password);
    expect(JSON.parse(shown.stdout).remote.hasPassword).to.equal(true);
    expect(here.logs.join('\n')).not.to.include(password);
  });

  it('manages rules from the CLI and the API: add, list, rm, and spec-shaped refusals', async () => {
    const added = await here.cli(['replication', 'add', 'cli-rule', '--push', '--remote', there.url, '--repository', 'release/*', '--semver', '^1', '--newest', '2']);
    expect(added.code, added.stderr).to.equal(0);
    expect(JSON.parse(added.stdout)).to.deep.include({ name: 'cli-rule', direction: 'push', newest: 2, tags: { semver: '^1' } });
    const listed = (await local.request('GET', '/api/v1/replication/rules')).json;
    expect(listed.rules.map((r: any) => r.name)).to.include.members(['cli-rule', 'from-dist', 'to-berth']);
    expect((await ruleStatus(local, 'to-berth')).last.outcome).to.equal('succeeded');

    const duplicate = await local.request('POST', '/api/v1/replication/rules', { body: JSON.stringify({ name: 'cli-rule', direction: 'push', remote: { url: there.url }, repositories: ['x'] }) });
    expect(duplicate.status).to.equal(409);
    expect(duplicate.json.errors[0]).to.include({ code: 'EXISTS' });
    const invalid = await local.request('POST', '/api/v1/replication/rules', { body: JSON.stringify({ name: 'Bad Name', direction: 'sideways' }) });
    expect(invalid.status).to.equal(400);
    expect(invalid.json.errors[0].code).to.equal('INVALID');
    const notJson = await local.request('POST', '/api/v1/replication/rules', { body: '{' });
    expect(notJson.status).to.equal(400);

    const removed = await here.cli(['replication', 'rm', 'cli-rule']);
    expect(removed.code, removed.stderr).to.equal(0);
    expect((await local.request('GET', '/api/v1/replication/rules/cli-rule')).status).to.equal(404);
    expect((await local.request('DELETE', '/api/v1/replication/rules/cli-rule')).status).to.equal(404);
  });

  it('shows the rules and their last runs on a page readable without JavaScript, whose form starts a run', async () => {
    const page = await local.request('GET', '/admin/replication');
    expect(page.status).to.equal(200);
    expect(page.headers['content-type']).to.include('text/html');
    expect(page.text).to.include('id="rule-from-dist"').and.include('Pulls from').and.include('succeeded');
    expect(page.text).not.to.include('<script>');
    const refused = await local.request('POST', '/admin/replication/from-dist/run', { body: '_csrf=wrong', headers: { 'Content-Type': FORM, Cookie: cookiesOf(page) } });
    expect(refused.status).to.equal(403);
    const runs = (await ruleStatus(local, 'from-dist')).history.length;
    const started = await local.request('POST', '/admin/replication/from-dist/run', { body: `_csrf=${csrfIn(page.text)}`, headers: { 'Content-Type': FORM, Cookie: cookiesOf(page) } });
    expect(started.status, started.text).to.equal(202);
    expect(started.text).to.include('A run of from-dist started');
    await waitFor(async () => (await ruleStatus(local, 'from-dist')).history.length > runs || undefined, 'the run the form started');
  });

  it('tells global webhook endpoints that subscribe to replication of each run\'s end, signed', async () => {
    const receiver = await startReceiver();
    try {
      const added = await local.request('POST', '/api/v1/webhooks', { body: JSON.stringify({ url: receiver.url, events: ['replication'] }), headers: { 'Content-Type': 'application/json' } });
      expect(added.status, added.text).to.equal(201);
      receiver.secret = added.json.secret;
      const namespaced = await local.request('POST', '/api/v1/webhooks', { body: JSON.stringify({ url: receiver.url, events: ['replication'], namespace: 'team' }), headers: { 'Content-Type': 'application/json' } });
      expect(namespaced.status).to.equal(400);
      const run = await runRule(local, 'from-dist');
      const delivery = await waitFor(() => receiver.deliveries.find((d) => d.json.events[0].replication?.run === run.id), 'the replication event');
      expect(delivery.verified).to.equal(true);
      expect(delivery.json.events[0]).to.deep.include({ action: 'replication' });
      expect(delivery.json.events[0].replication).to.include({ rule: 'from-dist', direction: 'pull', outcome: run.outcome, skipped: run.skipped, copied: run.copied });
    } finally {
      await receiver.close();
    }
  });

  it('pushes referrers to a registry without the referrers API under the fallback tag, and pulls them back from it', async () => {
    const pushed = await pushIndex(local, 'signed/app', '2.0.0', ['linux/amd64']);
    const signature = await pushReferrer(local, 'signed/app', { mediaType: OCI_INDEX, digest: pushed.digest, size: pushed.index.length });
    await addRule(local, { name: 'to-dist', direction: 'push', remote: { url: source.url }, repositories: ['signed/app'], tags: { glob: ['2.*'] } });
    expect(await runRule(local, 'to-dist')).to.include({ outcome: 'succeeded', copied: 1 });
    const fallback = await manifestBytes(new Registry(source.url), 'signed/app', pushed.digest.replace(':', '-'));
    expect(fallback.status).to.equal(200);
    expect(JSON.parse(fallback.body.toString()).manifests.map((m: any) => m.digest)).to.deep.equal([signature]);

    await addRule(local, { name: 'back-from-dist', direction: 'pull', remote: { url: source.url }, repositories: ['signed/app'], destination: 'back', tags: { glob: ['2.*'] } });
    expect(await runRule(local, 'back-from-dist')).to.include({ outcome: 'succeeded', copied: 1 });
    const referrers = await local.request('GET', `/v2/back/signed/app/referrers/${pushed.digest}`);
    expect(referrers.json.manifests.map((m: any) => m.digest)).to.deep.equal([signature]);
    expect((await manifestBytes(local, 'back/signed/app', signature)).digest).to.equal(signature);
  });
});
