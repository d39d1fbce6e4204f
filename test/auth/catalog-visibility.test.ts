// The catalog and the search filter by the visibility index held in memory (storage/visibility.ts), not by
// reading each repository's settings. They must show every caller exactly what the settings-reading path
// grants: for each caller, the names a token request for `repository:<name>:pull` is granted (AuthService
// reads the settings) are the names the catalog and the search show — anonymous, a user, an organisation
// member, a personal access token and a robot with scopes, the owner, an admin (dora) — across visibility changes
// made by the admin command (another process) and by the settings form, on workers and on replicas.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthorizedRegistry, addUser, bearer, cli, tokenFor, tokenRequest } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { Registry, type RawResponse } from '../helpers/registry.ts';

type Credentials = [string, string] | undefined;

const REPOSITORIES = ['alice/open', 'alice/secret', 'acme/pub', 'acme/tool', 'carol/thing'];

function cookiesOf(res: RawResponse): string {
  return (res.headers['set-cookie'] ?? '').split(/,(?=\s*berth_)/).map((c) => c.split(';')[0]!.trim()).join('; ');
}

function csrfIn(text: string): string {
  return /name="_csrf" value="([^"]+)"/.exec(text)![1]!;
}

/** Every repository name the catalog holds, followed page by page through its Link headers. */
async function catalogPages(registry: Registry, token: string, n: number): Promise<string[]> {
  const names: string[] = [];
  let path: string | undefined = `/v2/_catalog?n=${n}`;
  for (let pages = 0; path; pages++) {
    expect(pages, 'pages').to.be.below(50);
    const res = await registry.request('GET', path, { headers: bearer(token) });
    expect(res.status, res.text).to.equal(200);
    const page = res.json.repositories as string[];
    expect(page.length).to.be.at.most(n);
    names.push(...page);
    path = /^<([^>]+)>; rel="next"$/.exec(res.headers.link ?? '')?.[1];
  }
  return names;
}

function scenario(mode: 'public-index' | 'private', start: () => Promise<TestBerth[]>, stop: () => Promise<void>) {
  let servers: TestBerth[];
  const callers: Record<string, Credentials> = {
    anonymous: undefined,
    alice: ['alice', 'alice-password-1'],
    bob: ['bob', 'bob-password-1'],
    carol: ['carol', 'carol-password-1'],
    dora: ['dora', 'dora-password-1'],
  };

  before(async function () {
    servers = await start();
    const first = servers[0]!;
    for (const [name, credentials] of Object.entries(callers)) if (credentials) await addUser(first, ...credentials, name === 'dora');
    await cli(first, ['org', 'add', 'acme', '--owner', 'alice']);
    await cli(first, ['org', 'member', 'acme', 'bob', '--role', 'read']);
    const registry = new Registry(first.url);
    const alice = new AuthorizedRegistry(first.url, bearer(await tokenFor(registry, REPOSITORIES.filter((r) => !r.startsWith('carol/')).map((r) => `repository:${r}:pull,push`), callers.alice)));
    for (const name of REPOSITORIES.filter((r) => !r.startsWith('carol/'))) await alice.pushImage(name, 'v1', { layers: [name] });
    const carol = new AuthorizedRegistry(first.url, bearer(await tokenFor(registry, ['repository:carol/thing:pull,push'], callers.carol)));
    await carol.pushImage('carol/thing', 'v1');
    for (const name of ['alice/secret', 'acme/tool', 'carol/thing']) await cli(first, ['repo', 'visibility', name, 'private']);
    for (const name of ['alice/open', 'acme/pub']) await cli(first, ['repo', 'visibility', name, 'public']);
    // A robot of acme that may pull acme/*, and a token of bob's that may pull alice/* only.
    callers['acme+ci'] = ['acme+ci', /token: (\S+)/.exec(await cli(first, ['token', 'create', '--robot', 'acme+ci', '--scope', 'repository:acme/*:pull']))![1]!];
    callers['bob (token for alice/*)'] = ['bob', /token: (\S+)/.exec(await cli(first, ['token', 'create', '--user', 'bob', '--scope', 'repository:alice/*:pull']))![1]!];
  });
  after(stop);

  /** What a token request grants the caller (AuthService reads each repository's settings): the truth. */
  async function pullable(registry: Registry, credentials: Credentials): Promise<string[]> {
    const res = await tokenRequest(registry, REPOSITORIES.map((r) => `repository:${r}:pull`), credentials);
    if (res.status === 401) return [];
    expect(res.status, res.text).to.equal(200);
    const claims = JSON.parse(Buffer.from((res.json.token as string).split('.')[1]!, 'base64url').toString());
    return (claims.access as Array<{ name: string }>).map((a) => a.name).sort();
  }

  /** Asks every server (twice: workers take turns) for each caller's catalog and search; returns the views. */
  async function expectViewsAsGranted(): Promise<Record<string, string[]>> {
    const views: Record<string, string[]> = {};
    for (const server of [...servers, ...servers]) {
      const registry = new Registry(server.url);
      for (const [who, credentials] of Object.entries(callers)) {
        const expected = await pullable(registry, credentials);
        views[who] = expected;
        const catalogToken = await tokenRequest(registry, ['registry:catalog:*'], credentials);
        if (mode === 'private' && !credentials) {
          expect(catalogToken.status, 'no token for strangers in private mode').to.equal(401);
          expect(expected).to.deep.equal([]);
          continue;
        }
        const token = catalogToken.json.token as string;
        const catalog = await registry.request('GET', '/v2/_catalog', { headers: bearer(token) });
        expect(catalog.json.repositories, `${who}'s catalog on ${server.url}`).to.deep.equal(expected);
        expect(await catalogPages(registry, token, 1), `${who}'s catalog page by page`).to.deep.equal(expected);
        expect(await catalogPages(registry, token, 2), `${who}'s catalog two by two`).to.deep.equal(expected);
        // The search as the same caller (a bearer token; none for anonymous) sees the same repositories.
        const search = await registry.request('GET', '/api/v1/search?n=100', credentials ? { headers: bearer(token) } : {});
        expect(search.json.results.map((r: { name: string }) => r.name), `${who}'s search`).to.deep.equal(expected);
        expect(search.json.total).to.equal(expected.length);
      }
    }
    return views;
  }

  it('shows each caller in the catalog and the search exactly what it may pull', async function () {
    const views = await expectViewsAsGranted();
    // The expectations themselves, so that a policy change cannot make this test vacuous.
    expect(views.dora).to.deep.equal([...REPOSITORIES].sort());
    expect(views.alice).to.deep.equal(['acme/pub', 'acme/tool', 'alice/open', 'alice/secret']);
    expect(views.bob).to.deep.equal(['acme/pub', 'acme/tool', 'alice/open']);
    expect(views['bob (token for alice/*)']).to.deep.equal(['alice/open']);
    expect(views.carol).to.deep.equal(['acme/pub', 'alice/open', 'carol/thing']);
    expect(views['acme+ci']).to.deep.equal(['acme/pub', 'acme/tool']);
    expect(views.anonymous).to.deep.equal(mode === 'public-index' ? ['acme/pub', 'alice/open'] : []);
  });

  it('follows a visibility change by the admin command (another process): private → public → private', async function () {
    await cli(servers[0]!, ['repo', 'visibility', 'alice/secret', 'public']);
    const shown = await expectViewsAsGranted();
    expect(shown.bob).to.include('alice/secret');
    expect(shown['bob (token for alice/*)']).to.deep.equal(['alice/open', 'alice/secret']);
    await cli(servers[0]!, ['repo', 'visibility', 'alice/secret', 'private']);
    const hidden = await expectViewsAsGranted();
    expect(hidden.bob).to.not.include('alice/secret');
    expect(hidden.carol).to.not.include('alice/secret');
  });

  it('follows a visibility change by the settings form, made on another server than the one asked', async function () {
    const owner = new Registry(servers[servers.length - 1]!.url);
    const form = await owner.request('GET', '/signin');
    const signedIn = await owner.request('POST', '/signin', {
      body: new URLSearchParams({ username: 'carol', password: 'carol-password-1', _csrf: csrfIn(form.text) }).toString(),
      headers: { Cookie: cookiesOf(form), 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(signedIn.status).to.equal(302);
    const session = cookiesOf(signedIn);
    const save = async (visibility: string) => {
      const settings = await owner.request('GET', '/settings/carol/thing', { headers: { Cookie: session } });
      const saved = await owner.request('POST', '/settings/carol/thing', {
        body: new URLSearchParams({ _csrf: csrfIn(settings.text), description: 'a thing', readme: '', visibility }).toString(),
        headers: { Cookie: session, 'Content-Type': 'application/x-www-form-urlencoded' },
      });
      expect(saved.status).to.equal(200);
    };
    await save('public');
    expect((await expectViewsAsGranted()).alice).to.include('carol/thing');
    await save('private');
    expect((await expectViewsAsGranted()).alice).to.not.include('carol/thing');
  });
}

describe('auth: the catalog and the search filter by the visibility index', function () {
  this.timeout(180_000);

  describe('public-index mode, one server with two workers', function () {
    let berth: TestBerth | undefined;
    scenario('public-index', async () => [(berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_WORKERS: '2' } }))], async () => {
      await berth?.destroy();
    });
  });

  describe('private mode, two replicas sharing storage and Redis', function () {
    let redis: TestRedis | undefined;
    let dataDir: string | undefined;
    const replicas: TestBerth[] = [];
    scenario(
      'private',
      async () => {
        redis = await startRedis();
        dataDir = mkdtempSync(join(tmpdir(), 'berth-catalog-visibility-'));
        const env = { BERTH_MODE: 'private', BERTH_REDIS_URL: redis.url };
        replicas.push(await startBerth({ dataDir, env }), await startBerth({ dataDir, env }));
        return replicas;
      },
      async () => {
        for (const replica of replicas) await replica.destroy();
        await redis?.stop();
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      },
    );
  });
});
