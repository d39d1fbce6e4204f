// When runs happen and where credentials go: a push rule runs after each push to a repository it
// copies, to a Berth whose token realm is on another host (the credentials go there only when the rule
// lists that realm); a schedule runs once per interval across two replicas sharing storage and Redis.
import { expect } from 'chai';
import { addUser, basic } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { startRealm } from '../helpers/realm.ts';
import { freePort } from '../helpers/redis.ts';
import { Registry } from '../helpers/registry.ts';
import { useReplicas } from '../helpers/replicas.ts';
import { waitFor } from '../helpers/wait.ts';
import { UpstreamRegistry } from '../mirror/helpers.ts';
import { addRule, manifestBytes, ruleStatus, runRule } from './helpers.ts';

const PASSWORD = 'replication robot password';

describe('replication: triggers and credentials', function () {
  this.timeout(60_000);

  describe('a push rule to a Berth whose token realm is on another host', () => {
    let remote: TestBerth;
    let here: TestBerth;
    let realm: Awaited<ReturnType<typeof startRealm>>;
    const local = new Registry('http://127.0.0.1:0');
    const remoteRegistry = new Registry('http://127.0.0.1:0');

    before(async () => {
      realm = await startRealm(() => remote.url);
      const port = await freePort();
      [remote, here] = await Promise.all([
        startBerth({ port, env: { BERTH_MODE: 'public-index', BERTH_AUTH_REALM: `${realm.url}/token` } }),
        startBerth({ env: { BERTH_REPLICATION_TICK_SECONDS: '0' } }),
      ]);
      await addUser(remote, 'alice', PASSWORD);
      local.base = here.url;
      remoteRegistry.base = remote.url;
    });
    after(() => Promise.all([here?.destroy(), remote?.destroy(), realm?.close()]));

    it('never sends the credentials to a realm on another host the rule does not list: the push is refused and the run stops', async () => {
      await local.pushImage('apps/web', 'v1', { layers: ['web v1'] });
      await addRule(local, { name: 'unlisted', direction: 'push', remote: { url: remote.url, username: 'alice', password: PASSWORD }, repositories: ['apps/*'], destination: 'alice' });
      realm.seen.length = 0;
      const run = await runRule(local, 'unlisted');
      expect(run).to.include({ outcome: 'stopped', reason: 'refused' });
      expect(realm.seen.length).to.be.greaterThan(0);
      expect(realm.seen.every((h) => h.authorization === undefined)).to.equal(true);
      expect(here.logs.join('\n')).not.to.include(PASSWORD);
    });

    it('runs after each push to a matching repository, its credentials going to the realm it lists', async () => {
      await addRule(local, { name: 'on-push', direction: 'push', remote: { url: remote.url, username: 'alice', password: PASSWORD, realms: [realm.url] }, repositories: ['apps/*'], destination: 'alice', onPush: true });
      realm.seen.length = 0;
      const pushed = await local.pushImage('apps/api', 'v2', { layers: ['api v2'] });
      const run = await waitFor(async () => (await ruleStatus(local, 'on-push')).history.find((r: any) => r.trigger === 'push'), 'a run after the push', 20_000);
      expect(run).to.include({ outcome: 'succeeded' });
      expect(realm.seen.some((h) => h.authorization === basic('alice', PASSWORD))).to.equal(true);
      // Read back as alice: the copy is hers.
      const res = await remoteRegistry.request('GET', `/token?service=berth&scope=repository:alice/apps/api:pull`, { headers: { Authorization: basic('alice', PASSWORD) } });
      const token = res.json?.token as string | undefined;
      const asAlice = await remoteRegistry.request('GET', '/v2/alice/apps/api/manifests/v2', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json', ...(token ? { Authorization: `Bearer ${token}` } : {}) } });
      expect(asAlice.status, asAlice.text).to.equal(200);
      expect(asAlice.body.equals(pushed.manifest)).to.equal(true);
      expect(here.logs.join('\n')).not.to.include(PASSWORD);
    });
  });

  describe('a schedule on two replicas', () => {
    const replicas = useReplicas({ BERTH_REPLICATION_TICK_SECONDS: '1', BERTH_REPLICATION_STALE_SECONDS: '5' });
    let source: TestDistribution;
    before(async () => {
      source = await startDistribution();
      await new UpstreamRegistry(source.url).pushImage('team/app', 'v1', { layers: ['scheduled layer'] });
    });
    after(() => source?.stop());

    it('runs once per interval across both, never two at once', async () => {
      const a = new Registry(replicas.a.url);
      await addRule(a, { name: 'every-2s', direction: 'pull', remote: { url: source.url }, repositories: ['team/app'], destination: 'sched', intervalSeconds: 2 });
      const history = await waitFor(async () => {
        const runs = (await ruleStatus(a, 'every-2s')).history as any[];
        return runs.length >= 3 ? runs : undefined;
      }, 'three scheduled runs', 30_000);
      const runs = [...history].reverse();
      expect(runs.every((r) => r.trigger === 'schedule')).to.equal(true);
      expect(runs[0]).to.include({ copied: 1 });
      expect(runs.slice(1).every((r) => r.skipped === 1 && r.copied === 0)).to.equal(true);
      for (let i = 1; i < runs.length; i++) {
        expect(Date.parse(runs[i].startedAt), 'after the previous run ended').to.be.at.least(Date.parse(runs[i - 1].finishedAt));
        expect(Date.parse(runs[i].startedAt) - Date.parse(runs[i - 1].startedAt), 'an interval apart').to.be.at.least(1800);
      }
      expect((await manifestBytes(new Registry(replicas.b.url), 'sched/team/app', 'v1')).status).to.equal(200);
    });
  });
});
