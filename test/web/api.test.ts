// The catalog's JSON API and forms over HTTP against a real Berth in public-index mode: search with
// filters, the same visibility as /v2 (a private repository is found only by who may pull it), the
// Windows verdict, pull counts, docker-search shape, sign-in sessions and the CSRF refusal.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, bearer, cli, tokenFor } from '../helpers/auth.ts';
import { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { cookiesOf, csrfIn } from '../helpers/web.ts';

const alice: [string, string] = ['alice', 'alice-password-1'];
const WINDOWS_CONFIG = { architecture: 'amd64', os: 'windows', 'os.version': '10.0.17763.5329', rootfs: { type: 'layers', diff_ids: [] } };

describe('web: the catalog API and forms', function () {
  this.timeout(60_000);
  let berth: TestBerth;
  let registry: Registry;

  before(async () => {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_PULL_COUNT_FLUSH_SECONDS: '1' } });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    const owner = new AuthorizedRegistry(
      berth.url,
      bearer(await tokenFor(registry, ['repository:alice/web:pull,push', 'repository:alice/win:pull,push', 'repository:alice/secret:pull,push'], alice)),
    );
    await owner.pushImage('alice/web', 'v1', { config: { architecture: 'arm64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } } });
    await owner.pushImage('alice/win', 'ltsc2019', { config: WINDOWS_CONFIG });
    await owner.pushImage('alice/secret', 'v1');
    await cli(berth, ['repo', 'visibility', 'alice/secret', 'private']);
  });
  after(() => berth?.destroy());

  it('searches with the OS filter: a Linux image never appears under windows, nor the reverse', async () => {
    const windows = await registry.request('GET', '/api/v1/search?os=windows');
    expect(windows.json.results.map((r: any) => r.name)).to.deep.equal(['alice/win']);
    const linux = await registry.request('GET', '/api/v1/search?os=linux&arch=arm64');
    expect(linux.json.results.map((r: any) => r.name)).to.deep.equal(['alice/web']);
  });

  it('shows a private repository only to who may pull it, even after a visibility change the index did not hear of', async () => {
    const anonymous = await registry.request('GET', '/api/v1/search');
    expect(anonymous.json.results.map((r: any) => r.name)).to.deep.equal(['alice/web', 'alice/win']);
    expect((await registry.request('GET', '/api/v1/repositories/alice/secret')).status).to.equal(404);
    const token = await tokenFor(registry, [], alice);
    const mine = await registry.request('GET', '/api/v1/search', { headers: bearer(token) });
    expect(mine.json.results.map((r: any) => r.name)).to.deep.equal(['alice/secret', 'alice/web', 'alice/win']);
    const docker = await registry.request('GET', '/v1/search?q=alice&n=25');
    expect(docker.json).to.include({ num_results: 2, page: 1, page_size: 25, query: 'alice' });
    expect(docker.json.results[0]).to.include({ name: 'alice/web', is_official: false, star_count: 0 });
  });

  it('states the Windows isolation verdict of a Windows Server 2019 image', async () => {
    const res = await registry.request('GET', '/api/v1/repositories/alice/win');
    const tag = res.json.tags[0];
    expect(tag.platforms[0]).to.include({ os: 'windows', osVersion: '10.0.17763.5329', windowsName: 'Windows Server 2019' });
    expect(tag.windows[0].process).to.deep.equal(['Windows Server 2019']);
    expect(tag.windows[0].hyperv).to.include.members(['Windows Server 2022', 'Windows Server 2025']);
    expect(tag.windows[0].hyperv).to.not.include('Windows Server 2016');
  });

  it('pages a repository\'s tags newest first, filtered by a name prefix, in the API and on the page', async () => {
    const owner = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/many:pull,push'], alice)));
    await owner.pushImage('alice/many', 'v0');
    const manifest = await owner.request('GET', '/v2/alice/many/manifests/v0', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    for (const tag of ['v1', 'v2', 'rc-1', 'v3', 'rc-2']) {
      const put = await owner.request('PUT', `/v2/alice/many/manifests/${tag}`, { body: manifest.body, headers: { 'Content-Type': manifest.headers['content-type']! } });
      expect(put.status).to.equal(201);
    }
    const all = (await registry.request('GET', '/api/v1/repositories/alice/many?n=100')).json.tags as { tag: string; pushedAt: string }[];
    const newestFirst = [...all].sort((a, b) => b.pushedAt.localeCompare(a.pushedAt) || a.tag.localeCompare(b.tag)).map((t) => t.tag);
    expect(all.map((t) => t.tag)).to.deep.equal(newestFirst);
    expect([...newestFirst].sort()).to.deep.equal(['rc-1', 'rc-2', 'v0', 'v1', 'v2', 'v3']);
    const pages = [];
    for (let p = 1; p <= 3; p++) {
      const res = await registry.request('GET', `/api/v1/repositories/alice/many?n=2&page=${p}`);
      expect(res.json.tagPage).to.include({ page: p, n: 2, total: 6, pages: 3 });
      pages.push(...res.json.tags.map((t: any) => t.tag));
    }
    expect(pages).to.deep.equal(newestFirst);
    const rc = await registry.request('GET', '/api/v1/repositories/alice/many?tag=rc-');
    expect(rc.json.tags.map((t: any) => t.tag)).to.deep.equal(newestFirst.filter((t) => t.startsWith('rc-')));
    expect(rc.json.tagPage.total).to.equal(2);
    const found = await registry.request('GET', '/api/v1/search?q=alice/many');
    expect(found.json.results[0]).to.include({ name: 'alice/many', tags: 6 });
    expect(found.json.results[0].newestTags).to.deep.equal(newestFirst);
    const page = await registry.request('GET', '/r/alice/many?tag=v&page=2&n=2');
    const vs = newestFirst.filter((t) => t.startsWith('v'));
    expect(page.text).to.include('page 2 of 2');
    for (const tag of newestFirst) {
      const row = new RegExp(`<th scope="row"[^>]*><a href="/r/alice/many/tags/${tag}">${tag}</a></th>`);
      if (vs.slice(2, 4).includes(tag)) expect(page.text).to.match(row);
      else expect(page.text).to.not.match(row);
    }
  });

  it('sorts a repository\'s tags by name on request, and never makes one page of thousands of tags', async function () {
    this.timeout(180_000);
    const owner = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/thousands:pull,push'], alice)));
    await owner.pushImage('alice/thousands', 't0000');
    const manifest = await owner.request('GET', '/v2/alice/thousands/manifests/t0000', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    const count = 1200;
    // Pushed in a scrambled order, so that push order and name order differ.
    const tags = Array.from({ length: count - 1 }, (_, i) => `t${String(((i + 1) * 7919) % count).padStart(4, '0')}`).filter((t) => t !== 't0000');
    for (let i = 0; i < tags.length; i += 8) {
      await Promise.all(tags.slice(i, i + 8).map(async (tag) => {
        const put = await owner.request('PUT', `/v2/alice/thousands/manifests/${tag}`, { body: manifest.body, headers: { 'Content-Type': manifest.headers['content-type']! } });
        expect(put.status).to.equal(201);
      }));
    }
    const total = tags.length + 1;
    const huge = await registry.request('GET', '/api/v1/repositories/alice/thousands?n=100000');
    expect(huge.json.tags).to.have.length(100);
    expect(huge.json.tagPage).to.include({ n: 100, total, pages: Math.ceil(total / 100), sort: 'pushed' });
    const byName = await registry.request('GET', '/api/v1/repositories/alice/thousands?sort=name&n=50&page=3');
    const sorted = ['t0000', ...tags].sort();
    expect(byName.json.tags.map((t: any) => t.tag)).to.deep.equal(sorted.slice(100, 150));
    expect(byName.json.tagPage).to.include({ page: 3, n: 50, total, sort: 'name' });
    const filtered = await registry.request('GET', '/api/v1/repositories/alice/thousands?sort=name&tag=t11&n=5');
    expect(filtered.json.tags.map((t: any) => t.tag)).to.deep.equal(sorted.filter((t) => t.startsWith('t11')).slice(0, 5));
    expect(filtered.json.tagPage.total).to.equal(100);
    const page = await registry.request('GET', '/r/alice/thousands?sort=name&page=2');
    expect(page.text.match(/<th scope="row"/g)).to.have.length(25);
    expect(page.text).to.include(`page 2 of ${Math.ceil(total / 25)}`);
    expect(page.text).to.match(new RegExp(`<th scope="row"[^>]*><a href="/r/alice/thousands/tags/${sorted[25]}">${sorted[25]}</a></th>`));
    // The links to the neighbouring pages keep the order.
    expect(page.text).to.include('href="/r/alice/thousands?sort=name&amp;page=3" rel="next"');
    expect(page.text).to.include('<option value="name" selected>name</option>');
  });

  it('counts pulls by tag', async () => {
    for (let i = 0; i < 3; i++) expect((await registry.request('GET', '/v2/alice/web/manifests/v1', { headers: bearer(await tokenFor(registry, ['repository:alice/web:pull'])) })).status).to.equal(200);
    await waitFor(async () => (await registry.request('GET', '/api/v1/repositories/alice/web')).json.pulls === 3, 'pull count 3');
    const sorted = await registry.request('GET', '/api/v1/search?sort=pulls');
    expect(sorted.json.results[0].name).to.equal('alice/web');
  });

  it('signs in with a session cookie (HttpOnly, SameSite=Lax) and refuses a form post without its CSRF token', async () => {
    const form = await registry.request('GET', '/signin');
    expect(form.headers['set-cookie']).to.match(/berth_csrf=[^;]+;.*samesite=lax.*httponly/i);
    const cookie = cookiesOf(form);
    const body = new URLSearchParams({ username: alice[0], password: alice[1] });
    const refused = await registry.request('POST', '/signin', { body: body.toString(), headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' } });
    expect(refused.status).to.equal(403);
    expect(refused.headers['set-cookie'] ?? '').to.not.match(/berth_session/);

    body.set('_csrf', csrfIn(form.text));
    const signedIn = await registry.request('POST', '/signin', { body: body.toString(), headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' } });
    expect(signedIn.status).to.equal(302);
    expect(signedIn.headers['set-cookie']).to.match(/berth_session=[^;]+;.*samesite=lax.*httponly/i);
    const session = cookiesOf(signedIn);
    const mine = await registry.request('GET', '/mine', { headers: { Cookie: session } });
    expect(mine.text).to.include('alice/secret');

    const settings = await registry.request('GET', '/settings/alice/web', { headers: { Cookie: session } });
    expect(settings.status).to.equal(200);
    const post = (fields: Record<string, string>) =>
      registry.request('POST', '/settings/alice/web', { body: new URLSearchParams(fields).toString(), headers: { Cookie: session, 'Content-Type': 'application/x-www-form-urlencoded' } });
    expect((await post({ description: 'stolen', readme: '' })).status).to.equal(403);
    expect((await post({ _csrf: csrfIn(form.text), description: 'stolen', readme: '' })).status, 'the visitor token is not the session token').to.equal(403);
    const saved = await post({ _csrf: csrfIn(settings.text), description: 'A tiny web server', readme: '# Hello\n<script>alert(1)</script>', visibility: 'public' });
    expect(saved.status).to.equal(200);
    const found = await registry.request('GET', '/api/v1/search?q=tiny');
    expect(found.json.results.map((r: any) => r.name)).to.deep.equal(['alice/web']);
    const page = await registry.request('GET', '/r/alice/web');
    expect(page.text).to.include('<h1>Hello</h1>').and.not.include('<script>alert');
  });

  it('ends a browser session when the password changes', async () => {
    await addUser(berth, 'dan', 'dan-password-1');
    const form = await registry.request('GET', '/signin');
    const body = new URLSearchParams({ username: 'dan', password: 'dan-password-1', _csrf: csrfIn(form.text) });
    const signedIn = await registry.request('POST', '/signin', { body: body.toString(), headers: { Cookie: cookiesOf(form), 'Content-Type': 'application/x-www-form-urlencoded' } });
    const session = cookiesOf(signedIn);
    const before = await registry.request('GET', '/mine', { headers: { Cookie: session } });
    expect(before.status).to.equal(200);
    await cli(berth, ['user', 'passwd', 'dan', '--password-stdin'], 'dan-password-2\n');
    const after = await registry.request('GET', '/mine', { headers: { Cookie: session } });
    expect(after.status).to.equal(302);
    expect(after.headers.location).to.match(/\/signin/);
  });

  it('counts failed sign-ins with the server\'s login limits: the account is locked for /token too', async () => {
    await addUser(berth, 'erin', 'erin-password-1');
    const form = await registry.request('GET', '/signin');
    const attempt = (password: string) =>
      registry.request('POST', '/signin', {
        body: new URLSearchParams({ username: 'erin', password, _csrf: csrfIn(form.text) }).toString(),
        headers: { Cookie: cookiesOf(form), 'Content-Type': 'application/x-www-form-urlencoded' },
      });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await attempt(`guess-${i}`)).status);
    expect(statuses.slice(0, 10)).to.deep.equal(Array(10).fill(401));
    expect(statuses[10]).to.equal(429);
    expect((await attempt('erin-password-1')).status).to.equal(429);
    const token = await registry.request('GET', '/token?service=berth', { headers: { Authorization: `Basic ${Buffer.from('erin:erin-password-1').toString('base64')}` } });
    expect(token.status).to.equal(429);
  });

  it('renders a social card PNG for link previews', async () => {
    const page = await registry.request('GET', '/r/alice/win');
    const image = /<meta property="og:image" content="([^"]+)"/.exec(page.text)![1]!;
    const card = await registry.request('GET', new URL(image).pathname);
    expect(card.status).to.equal(200);
    expect(card.headers['content-type']).to.equal('image/png');
    expect(card.body.subarray(1, 4).toString()).to.equal('PNG');
    // The name is drawn in dark text where the card's light background would otherwise be: a font was found.
    const { default: sharp } = await import('sharp');
    const meta = await sharp(card.body).metadata();
    expect(meta).to.include({ width: 1200, height: 630 });
    const nameArea = await sharp(card.body).extract({ left: 80, top: 160, width: 500, height: 70 }).stats();
    expect(nameArea.channels[0]!.min).to.be.below(80);
    expect((await registry.request('GET', '/card/alice/secret')).status).to.equal(404);
  });
});

describe('web: the catalog of a private registry', function () {
  this.timeout(60_000);
  let berth: TestBerth;
  let registry: Registry;

  before(async () => {
    berth = await startBerth({ env: { BERTH_MODE: 'private' } });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    const owner = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/internal:pull,push'], alice)));
    await owner.pushImage('alice/internal', 'v1');
  });
  after(() => berth?.destroy());

  it('shows a visitor only the way to sign in, offers no sign-up, and lists repositories to their owner', async () => {
    const home = await registry.request('GET', '/');
    expect(home.status).to.equal(302);
    expect(home.headers.location).to.equal('/signin');
    expect((await registry.request('GET', '/r/alice/internal')).headers.location).to.equal('/signin');
    expect((await registry.request('GET', '/signup')).status).to.equal(404);
    expect((await registry.request('GET', '/api/v1/search')).json.total).to.equal(0);
    expect((await registry.request('GET', '/v1/search?q=internal')).json.num_results).to.equal(0);
    const owned = await registry.request('GET', '/api/v1/search', { headers: bearer(await tokenFor(registry, [], alice)) });
    expect(owned.json.results.map((r: any) => r.name)).to.deep.equal(['alice/internal']);
  });
});

describe('web: the catalog in open mode', function () {
  this.timeout(60_000);
  let berth: TestBerth;

  before(async () => {
    berth = await startBerth();
    await new Registry(berth.url).pushImage('dev/thing', 'v1');
  });
  after(() => berth?.destroy());

  it('shows everything to everyone, with no sign-in', async () => {
    const registry = new Registry(berth.url);
    expect((await registry.request('GET', '/api/v1/search')).json.results.map((r: any) => r.name)).to.deep.equal(['dev/thing']);
    const page = await registry.request('GET', '/r/dev/thing');
    expect(page.status).to.equal(200);
    expect(page.text).to.not.include('Sign in');
    expect((await registry.request('GET', '/signin')).status).to.equal(404);
  });
});
