// The catalog on two replicas sharing storage and a real redis-server: a push through one is found at once
// by a search on the other (whose index was already loaded), and a session made on one is accepted by both.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthorizedRegistry, addUser, bearer, tokenFor } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { Registry } from '../helpers/registry.ts';

describe('web: the catalog on two replicas sharing storage and Redis', function () {
  this.timeout(60_000);
  let redis: TestRedis;
  let dataDir: string;
  let a: TestBerth;
  let b: TestBerth;

  before(async () => {
    redis = await startRedis();
    dataDir = mkdtempSync(join(tmpdir(), 'berth-web-replicas-'));
    const env = { BERTH_REDIS_URL: redis.url, BERTH_MODE: 'public-index' };
    a = await startBerth({ dataDir, env });
    b = await startBerth({ dataDir, env });
    await addUser(a, 'erin', 'erin-password-1');
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
    await redis?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('finds on one replica what was pushed through the other, at once', async () => {
    const rb = new Registry(b.url);
    expect((await rb.request('GET', '/api/v1/search?q=erin')).json.total).to.equal(0);
    const ra = new Registry(a.url);
    const owner = new AuthorizedRegistry(a.url, bearer(await tokenFor(ra, ['repository:erin/shared:pull,push'], ['erin', 'erin-password-1'])));
    await owner.pushImage('erin/shared', 'v1');
    expect((await rb.request('GET', '/api/v1/search?q=erin')).json.results.map((r: any) => r.name)).to.deep.equal(['erin/shared']);
  });

  it('accepts on one replica a session made on the other, and ends it on both', async () => {
    const ra = new Registry(a.url);
    const form = await ra.request('GET', '/signin');
    const csrfCookie = form.headers['set-cookie']!.split(';')[0]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(form.text)![1]!;
    const signedIn = await ra.request('POST', '/signin', {
      body: new URLSearchParams({ _csrf: csrf, username: 'erin', password: 'erin-password-1' }).toString(),
      headers: { Cookie: csrfCookie, 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(signedIn.status).to.equal(302);
    const session = signedIn.headers['set-cookie']!.split(';')[0]!;
    const rb = new Registry(b.url);
    const mine = await rb.request('GET', '/mine', { headers: { Cookie: session } });
    expect(mine.status).to.equal(200);
    expect(mine.text).to.include('Sign out erin').and.include('erin/shared');

    const sessionCsrf = /name="_csrf" value="([^"]+)"/.exec(mine.text)![1]!;
    const out = await rb.request('POST', '/signout', {
      body: new URLSearchParams({ _csrf: sessionCsrf }).toString(),
      headers: { Cookie: session, 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(out.status).to.equal(302);
    expect((await ra.request('GET', '/mine', { headers: { Cookie: session } })).status, 'signed out everywhere').to.equal(302);
  });
});
