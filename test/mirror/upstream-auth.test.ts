// The mirror's side of upstream authentication, against real upstreams: Distribution with htpasswd
// (Basic), and a second Berth in public-index mode (the Bearer token flow Docker Hub uses), whose token
// realm may be moved to another loopback address (another host) that records what it is sent.
import { expect } from 'chai';
import { addUser, AuthorizedRegistry, basic, cli } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { errorCode, Registry } from '../helpers/registry.ts';
import { freePort } from '../helpers/redis.ts';
import { startRealm } from '../helpers/realm.ts';
import { getManifest, mirrorsEnv, UpstreamRegistry } from './helpers.ts';

const PASSWORD = 'correct horse battery staple';

describe('pull-through cache: upstream authentication', function () {
  this.timeout(120_000);

  describe('Distribution with htpasswd (Basic)', () => {
    let upstream: TestDistribution;
    let berth: TestBerth;
    const mirror = new Registry('http://127.0.0.1:0');

    before(async () => {
      upstream = await startDistribution({ users: { mirror: PASSWORD } });
      await new UpstreamRegistry(upstream.url, { Authorization: basic('mirror', PASSWORD) }).pushImage('team/app', 'v1', { layers: ['basic layer'] });
      berth = await startBerth({
        env: mirrorsEnv([
          { prefix: 'withcreds', upstream: upstream.url, username: 'mirror', password: PASSWORD },
          { prefix: 'nocreds', upstream: upstream.url },
        ]),
      });
      mirror.base = berth.url;
    });
    after(async () => {
      await berth?.destroy();
      await upstream?.stop();
    });

    it('pulls with the configured credentials, and is refused (DENIED) without them', async () => {
      const res = await getManifest(mirror, 'withcreds/team/app', 'v1');
      expect(res.status, res.text).to.equal(200);
      const refused = await getManifest(mirror, 'nocreds/team/app', 'v1');
      expect(refused.status).to.equal(403);
      expect(errorCode(refused)).to.equal('DENIED');
      expect(berth.logs.join('\n')).not.to.include(PASSWORD);
    });
  });

  describe('a Berth in public-index mode (Bearer tokens)', () => {
    let upstream: TestBerth;
    let realm: Awaited<ReturnType<typeof startRealm>>;
    let berth: TestBerth;
    const mirror = new Registry('http://127.0.0.1:0');

    before(async () => {
      // The upstream's realm is on another host: only a realm the mirror lists may see its credentials.
      realm = await startRealm(() => upstream.url);
      const port = await freePort();
      upstream = await startBerth({ port, env: { BERTH_MODE: 'public-index', BERTH_AUTH_REALM: `${realm.url}/token` } });
      await addUser(upstream, 'alice', PASSWORD);
      const alice = new AuthorizedRegistry(upstream.url, { Authorization: basic('alice', PASSWORD) });
      await alice.pushImage('alice/public', 'v1', { layers: ['public layer'] });
      await alice.pushImage('alice/secret', 'v1', { layers: ['secret layer'] });
      await cli(upstream, ['repo', 'visibility', 'alice/secret', 'private']);
      berth = await startBerth({
        env: mirrorsEnv([
          { prefix: 'anon', upstream: upstream.url },
          { prefix: 'unlisted', upstream: upstream.url, username: 'alice', password: PASSWORD },
          { prefix: 'listed', upstream: upstream.url, username: 'alice', password: PASSWORD, realms: [realm.url] },
        ]),
      });
      mirror.base = berth.url;
    });
    after(async () => {
      await berth?.destroy();
      await upstream?.destroy();
      await realm?.close();
    });

    it('pulls a public repository anonymously, and reuses the token for its scope (one token request for a manifest and its blobs)', async () => {
      const tokenRequests = () => upstream.logs.filter((l) => l.includes('"route":"token"')).length;
      const res = await getManifest(mirror, 'anon/alice/public', 'v1');
      expect(res.status, res.text).to.equal(200);
      const config = JSON.parse(res.text).config.digest as string;
      const layer = JSON.parse(res.text).layers[0].digest as string;
      const after = tokenRequests();
      expect(after).to.equal(1);
      expect((await mirror.request('GET', `/v2/anon/alice/public/blobs/${config}`)).status).to.equal(200);
      expect((await mirror.request('GET', `/v2/anon/alice/public/blobs/${layer}`)).text).to.equal('public layer');
      expect(tokenRequests()).to.equal(after);
      const secret = await getManifest(mirror, 'anon/alice/secret', 'v1');
      expect(secret.status).to.be.oneOf([403, 404]);
    });

    it('never sends the credentials to a realm on another host it does not list; a listed one gets them', async () => {
      realm.seen.length = 0;
      const unlisted = await getManifest(mirror, 'unlisted/alice/secret', 'v1');
      expect(unlisted.status).to.not.equal(200);
      expect(realm.seen.length).to.be.greaterThan(0);
      expect(realm.seen.every((h) => h.authorization === undefined)).to.equal(true);

      realm.seen.length = 0;
      const listed = await getManifest(mirror, 'listed/alice/secret', 'v1');
      expect(listed.status, listed.text).to.equal(200);
      expect(realm.seen.some((h) => h.authorization === basic('alice', PASSWORD))).to.equal(true);
      const layer = JSON.parse(listed.text).layers[0].digest as string;
      expect((await mirror.request('GET', `/v2/listed/alice/secret/blobs/${layer}`)).text).to.equal('secret layer');
      expect(berth.logs.join('\n')).not.to.include(PASSWORD);
    });
  });
});
