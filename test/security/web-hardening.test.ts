// The web catalog against a hostile browser, page and pusher, over a real Berth in public-index mode:
// cross-site posts are refused on every state-changing route (and sign-up takes only application/json);
// every response carries the page's security headers; a private repository's logo is answered as if it did
// not exist; a card per repository whatever the Host header, collected when the repository changes or goes;
// expired sessions and refresh tokens are refused, removed when read and swept when not; search and tag
// filters take wildcard characters literally; hostile labels and descriptions are shown as text.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, bearer, tokenFor, tokenRequest } from '../helpers/auth.ts';
import { OCI_MANIFEST, Registry, sha256, type RawResponse } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { cookiesOf, csrfIn, FORM, signIn } from '../helpers/web.ts';
import type { StorageDriver } from '../../storage/index.ts';

const alice: [string, string] = ['alice', 'alice-password-1'];
const EVIL = 'http://evil.example';
const SECURITY_HEADERS = ['content-security-policy', 'x-content-type-options', 'x-frame-options', 'referrer-policy'];

/** Every file under `dir` in the server's storage. */
async function filesUnder(driver: StorageDriver, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const path of await driver.list(dir)) {
    if ((await driver.stat(path))?.isDirectory) out.push(...(await filesUnder(driver, path)));
    else out.push(path);
  }
  return out;
}

const cardFiles = async (driver: StorageDriver) => (await filesUnder(driver, '/web')).filter((p) => /card/.test(p));

/** Rewrites a stored JSON record so that it expired a minute ago, as time passing would. */
async function expire(driver: StorageDriver, path: string): Promise<void> {
  const record = JSON.parse((await driver.getContent(path))!.toString()) as { expiresAt: string };
  record.expiresAt = new Date(Date.now() - 60_000).toISOString();
  await driver.putContent(path, JSON.stringify(record));
}

describe('security: the web catalog against hostile browsers, pages and pushers', function () {
  this.timeout(60_000);
  let berth: TestBerth;
  let registry: Registry;
  let session: string;

  /** Alice's client for one repository (a token's scope names one repository). */
  const owner = async (name: string) => new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, [`repository:${name}:pull,push,delete`], alice)));

  before(async () => {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_EXPIRY_SWEEP_INTERVAL_SECONDS: '1' } });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    await (await owner('alice/web')).pushImage('alice/web', 'v1');
    session = await signIn(registry, ...alice);
  });
  after(() => berth?.destroy());

  /** The settings page's form token and a post of its fields, from the signed-in session. */
  async function postSettings(name: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<RawResponse> {
    const page = await registry.request('GET', `/settings/${name}`, { headers: { Cookie: session } });
    const body = new URLSearchParams({ _csrf: csrfIn(page.text), readme: '', ...fields }).toString();
    return registry.request('POST', `/settings/${name}`, { body, headers: { Cookie: session, 'Content-Type': FORM, ...headers } });
  }

  describe('cross-site requests', () => {
    const signUp = (username: string, headers: Record<string, string>) =>
      registry.request('POST', '/api/v1/users', { body: JSON.stringify({ username, password: `${username}-password-1` }), headers });

    it('refuses a JSON sign-up sent as text/plain (what any page can make a browser send) with 415, and makes no account', async () => {
      expect((await signUp('mallory', { 'Content-Type': 'text/plain', Origin: EVIL })).status).to.equal(403);
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        const res = await signUp('mallory', { 'Content-Type': type });
        expect(res.status, type).to.equal(415);
        expect(res.json.errors[0].code).to.equal('UNSUPPORTED');
      }
      expect((await signUp('mallory', {})).status, 'no type at all').to.equal(415);
      expect((await tokenRequest(registry, [], ['mallory', 'mallory-password-1'])).status).to.equal(401);
    });

    it('refuses a sign-up from a foreign Origin or a cross-site fetch, even as application/json', async () => {
      for (const headers of [{ Origin: EVIL }, { 'Sec-Fetch-Site': 'cross-site' }, { 'Sec-Fetch-Site': 'same-site' }, { Origin: 'null' }] as Record<string, string>[]) {
        const res = await signUp('trudy', { 'Content-Type': 'application/json', ...headers });
        expect(res.status, JSON.stringify(headers)).to.equal(403);
        expect(res.json.errors[0].code).to.equal('DENIED');
      }
      expect((await tokenRequest(registry, [], ['trudy', 'trudy-password-1'])).status).to.equal(401);
      // A command-line client (no Origin) and the registry's own pages still sign up.
      expect((await signUp('carol', { 'Content-Type': 'application/json; charset=utf-8' })).status).to.equal(201);
      expect((await signUp('dave', { 'Content-Type': 'application/json', Origin: berth.url, 'Sec-Fetch-Site': 'same-origin' })).status).to.equal(201);
    });

    it('refuses a cross-site form post that carries a good CSRF token, on every state-changing page', async () => {
      const form = await registry.request('GET', '/signin');
      const visitor = cookiesOf(form);
      const token = csrfIn(form.text);
      const foreign: Record<string, string>[] = [{ Origin: EVIL }, { 'Sec-Fetch-Site': 'cross-site', Origin: EVIL }, { 'Sec-Fetch-Site': 'same-site' }];
      for (const headers of foreign) {
        for (const [path, fields] of [['/signin', { username: alice[0], password: alice[1] }], ['/signup', { username: 'eve', password: 'eve-password-1' }]] as const) {
          const res = await registry.request('POST', path, { body: new URLSearchParams({ ...fields, _csrf: token }).toString(), headers: { Cookie: visitor, 'Content-Type': FORM, ...headers } });
          expect(res.status, `${path} ${JSON.stringify(headers)}`).to.equal(403);
          expect(res.headers['set-cookie'] ?? '').to.not.match(/berth_session/);
        }
        const saved = await postSettings('alice/web', { description: 'defaced' }, headers);
        expect(saved.status, JSON.stringify(headers)).to.equal(403);
        const page = await registry.request('GET', `/settings/alice/web`, { headers: { Cookie: session } });
        const logo = await registry.request('POST', '/logo/alice/web', {
          body: `--b\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n${csrfIn(page.text)}\r\n--b--\r\n`,
          headers: { Cookie: session, 'Content-Type': 'multipart/form-data; boundary=b', ...headers },
        });
        expect(logo.status, JSON.stringify(headers)).to.equal(403);
        const out = await registry.request('POST', '/signout', { body: `_csrf=${encodeURIComponent(csrfIn(page.text))}`, headers: { Cookie: session, 'Content-Type': FORM, ...headers } });
        expect(out.status, JSON.stringify(headers)).to.equal(403);
      }
      expect((await registry.request('GET', '/api/v1/repositories/alice/web')).json.description).to.not.equal('defaced');
      expect((await registry.request('GET', '/mine', { headers: { Cookie: session } })).status, 'the session survived').to.equal(200);
      expect((await tokenRequest(registry, [], ['eve', 'eve-password-1'])).status).to.equal(401);
      // The same post from the page itself goes through.
      const same = await postSettings('alice/web', { description: 'A web server' }, { Origin: berth.url, 'Sec-Fetch-Site': 'same-origin' });
      expect(same.status).to.equal(200);
    });

    it('refuses cross-site writes to the token endpoint and the registry API as well', async () => {
      const token = await registry.request('POST', '/token', {
        body: new URLSearchParams({ grant_type: 'password', username: alice[0], password: alice[1], access_type: 'offline', service: 'berth' }).toString(),
        headers: { 'Content-Type': FORM, 'Sec-Fetch-Site': 'cross-site', Origin: EVIL },
      });
      expect(token.status).to.equal(403);
      const upload = await (await owner('alice/web')).request('POST', '/v2/alice/web/blobs/uploads/', { headers: { Origin: EVIL } });
      expect(upload.status).to.equal(403);
      expect(upload.json.errors[0].code).to.equal('DENIED');
    });
  });

  describe('security headers and private logos', () => {
    it('sends the same security headers on every response: pages, partial results, JSON, images, errors', async () => {
      const full = await registry.request('GET', '/');
      for (const name of SECURITY_HEADERS) expect(full.headers[name], name).to.be.a('string');
      const paths = ['/?partial=1&q=web', '/api/v1/search', '/v1/search?q=web', '/static/berth.js', '/card/alice/web', '/r/alice/none', '/nowhere', '/v2/', '/healthz'];
      for (const path of paths) {
        const res = await registry.request('GET', path);
        for (const name of SECURITY_HEADERS) expect(res.headers[name], `${name} on ${path}`).to.equal(full.headers[name]);
      }
      const refused = await registry.request('POST', '/api/v1/users', { body: '{', headers: { 'Content-Type': 'application/json' } });
      expect(refused.status).to.equal(400);
      for (const name of SECURITY_HEADERS) expect(refused.headers[name], `${name} on an error`).to.equal(full.headers[name]);
    });

    it('serves a private repository\'s logo only to who may pull it; to others it is what a missing repository\'s is', async () => {
      await (await owner('alice/hidden')).pushImage('alice/hidden', 'v1');
      expect((await postSettings('alice/hidden', { description: 'secret', visibility: 'private' })).status).to.equal(200);
      const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toBuffer();
      const page = await registry.request('GET', '/settings/alice/hidden', { headers: { Cookie: session } });
      const boundary = 'logoboundary';
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n${csrfIn(page.text)}\r\n--${boundary}\r\nContent-Disposition: form-data; name="logo"; filename="l.png"\r\nContent-Type: image/png\r\n\r\n`),
        png,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const uploaded = await registry.request('POST', '/logo/alice/hidden', { body, headers: { Cookie: session, 'Content-Type': `multipart/form-data; boundary=${boundary}` } });
      expect(uploaded.status).to.equal(200);

      const reader = bearer(await tokenFor(registry, [], alice));
      const shown = await registry.request('GET', '/api/v1/repositories/alice/hidden', { headers: reader });
      const url = shown.json.logo.png as string;
      const hex = sha256(png).slice(7);
      expect((await registry.request('GET', url, { headers: reader })).status, 'the owner sees it').to.equal(200);
      expect((await registry.request('GET', url, { headers: { Cookie: session } })).status, 'so does their session').to.equal(200);
      const stranger = await registry.request('GET', url);
      const missing = await registry.request('GET', url.replace('alice/hidden', 'alice/absent'));
      const bare = await registry.request('GET', `/images/${hex}-256.png`);
      for (const res of [stranger, bare]) {
        expect(res.status).to.equal(404);
        expect(res.headers['content-type']).to.equal(missing.headers['content-type']);
        expect(res.text).to.equal(missing.text);
      }
      expect(missing.status).to.equal(404);
      // A public repository that happens to use the same bytes does not open the private one's URL.
      expect((await registry.request('GET', url.replace('alice/hidden', 'alice/web'))).status).to.equal(404);
    });
  });

  describe('social cards', () => {
    it('stores one card per repository whatever the Host header, the same image for every host', async () => {
      const before = (await cardFiles(berth.storage)).length;
      const bodies = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const res = await registry.request('GET', '/card/alice/web', { headers: { Host: `attacker-${i}.example` } });
        expect(res.status).to.equal(200);
        bodies.add(sha256(res.body));
      }
      expect(bodies.size).to.equal(1);
      expect((await cardFiles(berth.storage)).length).to.be.at.most(before + 1);
    });

    it('replaces a repository\'s card when it changes and collects it when the repository goes', async () => {
      await (await owner('alice/carded')).pushImage('alice/carded', 'v1');
      expect((await registry.request('GET', '/card/alice/carded')).status).to.equal(200);
      const first = await cardFiles(berth.storage);
      expect((await postSettings('alice/carded', { description: 'changed' })).status).to.equal(200);
      expect((await registry.request('GET', '/card/alice/carded')).status).to.equal(200);
      expect((await cardFiles(berth.storage)).length, 'the old card is gone').to.equal(first.length);
      const carded = await owner('alice/carded');
      const manifest = await carded.request('HEAD', '/v2/alice/carded/manifests/v1', { headers: { Accept: OCI_MANIFEST } });
      expect((await carded.request('DELETE', `/v2/alice/carded/manifests/${manifest.headers['docker-content-digest']}`)).status).to.equal(202);
      await waitFor(async () => (await cardFiles(berth.storage)).length === first.length - 1, 'the card of a deleted repository swept');
    });
  });

  describe('cards with a public URL', () => {
    let named: TestBerth;
    after(() => named?.destroy());

    it('names the public URL in the page\'s card link and pull commands, whatever the Host header', async () => {
      named = await startBerth({ env: { BERTH_PUBLIC_URL: 'https://registry.example/' } });
      const client = new Registry(named.url);
      await client.pushImage('team/app', 'v1');
      const page = await client.request('GET', '/r/team/app', { headers: { Host: 'attacker.example' } });
      expect(/<meta property="og:image" content="([^"]+)"/.exec(page.text)![1]).to.equal('https://registry.example/card/team/app');
      expect(page.text).to.include('docker pull registry.example/team/app:v1').and.not.include('attacker.example');
      for (const host of ['a.example', 'b.example']) expect((await client.request('GET', '/card/team/app', { headers: { Host: host } })).status).to.equal(200);
      expect(await cardFiles(named.storage)).to.have.length(1);
    });
  });

  describe('expiry', () => {
    const sessionPath = (cookie: string) => `/web/sessions/${createHash('sha256').update(/berth_session=([^;]+)/.exec(cookie)![1]!).digest('hex')}.json`;

    it('refuses an expired session and removes it when it is presented', async () => {
      const expiring = await signIn(registry, ...alice);
      const path = sessionPath(expiring);
      expect((await registry.request('GET', '/mine', { headers: { Cookie: expiring } })).status).to.equal(200);
      await expire(berth.storage, path);
      const res = await registry.request('GET', '/mine', { headers: { Cookie: expiring } });
      expect(res.status).to.equal(302);
      expect(res.headers.location).to.equal('/signin');
      expect(await berth.storage.getContent(path)).to.equal(undefined);
    });

    it('sweeps expired sessions nobody presents again, and keeps live ones', async () => {
      const forgotten = await signIn(registry, ...alice);
      await expire(berth.storage, sessionPath(forgotten));
      await waitFor(async () => (await berth.storage.getContent(sessionPath(forgotten))) === undefined, 'the expired session swept');
      expect(await berth.storage.getContent(sessionPath(session))).to.not.equal(undefined);
    });

    it('refuses an expired refresh token, removes it when presented, and sweeps the ones nobody presents', async () => {
      const offline = async () => (await tokenRequest(registry, [], alice, '&offline_token=true')).json.refresh_token as string;
      const pathOf = (token: string) => `/auth/refresh/${token.slice('berth_rt.'.length).split('.')[0]}.json`;
      const presented = await offline();
      const forgotten = await offline();
      const live = await offline();
      await expire(berth.storage, pathOf(presented));
      const refreshed = await registry.request('POST', '/token', {
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: presented, service: 'berth' }).toString(),
        headers: { 'Content-Type': FORM },
      });
      expect(refreshed.status).to.equal(401);
      expect(await berth.storage.getContent(pathOf(presented))).to.equal(undefined);
      await expire(berth.storage, pathOf(forgotten));
      await waitFor(async () => (await berth.storage.getContent(pathOf(forgotten))) === undefined, 'the expired refresh token swept');
      expect(await berth.storage.getContent(pathOf(live))).to.not.equal(undefined);
    });
  });

  describe('wildcards and escaping', () => {
    before(async () => {
      await (await owner('alice/plain')).pushImage('alice/plain', 'v1');
      await (await owner('alice/under_score')).pushImage('alice/under_score', 'v1');
      expect((await postSettings('alice/plain', { description: '100% [literal] *star* what?' })).status).to.equal(200);
    });

    const found = async (q: string) => {
      const api = (await registry.request('GET', `/api/v1/search?q=${encodeURIComponent(q)}`)).json.results.map((r: any) => r.name);
      const docker = (await registry.request('GET', `/v1/search?q=${encodeURIComponent(q)}`)).json.results.map((r: any) => r.name);
      const page = (await registry.request('GET', `/?partial=1&q=${encodeURIComponent(q)}`)).text;
      const shown = [...page.matchAll(/<strong>([^<]+)<\/strong>/g)].map((m) => m[1]);
      expect(docker, `/v1/search ${q}`).to.deep.equal(api);
      expect(shown, `the page's ${q}`).to.deep.equal(api);
      return api;
    };

    it('takes %, _, *, ? and [ in a search literally', async () => {
      expect(await found('%')).to.deep.equal(['alice/plain']);
      expect(await found('_')).to.deep.equal(['alice/under_score']);
      expect(await found('*')).to.deep.equal(['alice/plain']);
      expect(await found('?')).to.deep.equal(['alice/plain']);
      expect(await found('[literal]')).to.deep.equal(['alice/plain']);
      expect(await found('[a-z]')).to.deep.equal([]);
      expect(await found('*a*')).to.deep.equal([]);
    });

    it('takes wildcard characters in a tag filter literally: they match no tag, rather than every tag', async () => {
      for (const filter of ['*', 'v*', 'v?', '%', '[v]', 'v_']) {
        const res = await registry.request('GET', `/api/v1/repositories/alice/web?tag=${encodeURIComponent(filter)}`);
        expect(res.json.tagPage.total, filter).to.equal(0);
        expect(res.json.tags, filter).to.deep.equal([]);
        const page = await registry.request('GET', `/r/alice/web?tag=${encodeURIComponent(filter)}`);
        expect(page.text, filter).to.not.match(/<th scope="row"[^>]*><a href="[^"]*">v1<\/a><\/th>/);
      }
      expect((await registry.request('GET', '/api/v1/repositories/alice/web?tag=v')).json.tagPage.total).to.equal(1);
      expect((await registry.request('GET', '/r/alice/web?tag=v')).text).to.match(/<th scope="row"[^>]*><a href="[^"]*">v1<\/a><\/th>/);
    });

    it('shows hostile platform fields, referrer types and descriptions as text on every page, card and API', async () => {
      const hostile = {
        os: '<script>window.x=1</script>',
        architecture: '"><img src=x onerror=alert(2)>',
        variant: "'><svg onload=alert(3)>",
        'os.version': '<iframe src=javascript:alert(4)>',
        config: { Labels: { 'org.opencontainers.image.description': '<script>alert(5)</script>' } },
        rootfs: { type: 'layers', diff_ids: [] },
      };
      const hostileOwner = await owner('alice/hostile');
      const image = await hostileOwner.pushImage('alice/hostile', 'v1', {
        config: hostile,
        extra: { annotations: { 'org.opencontainers.image.description': '<script>alert(6)</script>' } },
      });
      await hostileOwner.pushImage('alice/hostile', 'sig', {
        extra: {
          artifactType: 'application/vnd.x+<script>alert(7)</script>',
          subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length },
        },
      });
      const description = '"><script>alert(8)</script><img src=x onerror=alert(9)>';
      expect((await postSettings('alice/hostile', { description })).status).to.equal(200);
      const pages = [
        await registry.request('GET', '/r/alice/hostile'),
        await registry.request('GET', '/?q=hostile'),
        await registry.request('GET', '/?partial=1&q=hostile'),
        await registry.request('GET', '/mine', { headers: { Cookie: session } }),
        await registry.request('GET', '/settings/alice/hostile', { headers: { Cookie: session } }),
      ];
      for (const page of pages) {
        expect(page.status).to.equal(200);
        expect(page.text).to.include('&lt;script&gt;alert(8)');
        expect(page.text).to.not.match(/<script>|<img src=x|<svg|<iframe/i);
      }
      expect(pages[0]!.text).to.include('&lt;script&gt;window.x=1&lt;/script&gt;');
      expect(pages[0]!.text).to.include('&quot;&gt;&lt;img src=x');
      // The image pages show the config's, the manifest's and the referrer's hostile values, as text.
      const imagePages = [
        await registry.request('GET', '/r/alice/hostile/tags/v1'),
        await registry.request('GET', `/r/alice/hostile/manifests/${image.digest}`),
        await registry.request('GET', '/r/alice/hostile/tags/sig'),
      ];
      for (const page of imagePages) {
        expect(page.status).to.equal(200);
        expect(page.text).to.not.match(/<script>|<img src=x|<svg|<iframe/i);
      }
      for (const page of imagePages.slice(0, 2)) {
        expect(page.text).to.include('&lt;script&gt;window.x=1&lt;/script&gt;');
        expect(page.text).to.include('&lt;script&gt;alert(5)&lt;/script&gt;');
        expect(page.text).to.include('&lt;script&gt;alert(6)&lt;/script&gt;');
        expect(page.text).to.include('application/vnd.x+&lt;script&gt;alert(7)');
      }
      const api = await registry.request('GET', '/api/v1/repositories/alice/hostile?n=10');
      expect(api.headers['content-type']).to.match(/^application\/json/);
      expect(api.json.description).to.equal(description);
      const card = await registry.request('GET', '/card/alice/hostile');
      expect(card.status).to.equal(200);
      expect(card.headers['content-type']).to.equal('image/png');
    });
  });
});
