// What an account change does at once, on every worker: a removed user's name, roles, robots and
// credentials, and Basic credentials sent straight to /v2 after a password change or a revocation.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, basic, cli, tokenFor, tokenRequest, decodeJwt } from '../helpers/auth.ts';
import { Registry } from '../helpers/registry.ts';

/** Requests enough to reach both workers (a fresh connection each, so the primary spreads them). */
const SPREAD = 6;

describe('auth: account changes take effect at once, on every worker', function () {
  let berth: TestBerth;
  let registry: Registry;
  const alice: [string, string] = ['alice', 'alice-password-1'];
  const bob: [string, string] = ['bob', 'bob-password-1'];
  const admin: [string, string] = ['root-admin', 'admin-password-1'];

  const signUp = (username: string, password: string) =>
    registry.request('POST', '/api/v1/users', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }) });

  const refresh = (refreshToken: string) =>
    registry.request('POST', '/token', {
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, service: 'berth' }).toString(),
    });

  /** The statuses of SPREAD GETs of a manifest with these Basic credentials. */
  async function statusesWith(credentials: [string, string], path: string): Promise<number[]> {
    const statuses: number[] = [];
    for (let i = 0; i < SPREAD; i++) statuses.push((await registry.request('GET', path, { headers: { Authorization: basic(...credentials) } })).status);
    return statuses;
  }

  before(async function () {
    // Limits on failed logins far away: these tests send old credentials many times on purpose.
    const limits = { BERTH_LOGIN_FAILURES_PER_ACCOUNT: '1000', BERTH_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: '1000', BERTH_LOGIN_FAILURES_PER_ADDRESS: '1000' };
    berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_WORKERS: '2', ...limits } });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    await addUser(berth, ...bob);
    await addUser(berth, ...admin, true);
    await cli(berth, ['org', 'add', 'acme', '--owner', 'alice']);
    await cli(berth, ['org', 'member', 'acme', 'bob', '--role', 'admin']);
    const a = new AuthorizedRegistry(berth.url, { Authorization: basic(...alice) });
    await a.pushImage('acme/private', 'v1');
    await a.pushImage('alice/app', 'v1');
    await cli(berth, ['repo', 'visibility', 'acme/private', 'private']);
    const b = new AuthorizedRegistry(berth.url, { Authorization: basic(...bob) });
    await b.pushImage('bob/secret', 'v1');
    await cli(berth, ['repo', 'visibility', 'bob/secret', 'private']);
  });

  after(() => berth?.destroy());

  describe('berth user rm', function () {
    it('ends every way the name granted access, and leaves the name to admins only', async function () {
      const robotOut = await cli(berth, ['token', 'create', '--robot', 'bob+ci', '--scope', 'repository:bob/*:pull', '--expires-in', 'never']);
      const robot: [string, string] = ['bob+ci', /token: (\S+)/.exec(robotOut)![1]!];
      const offline = await tokenRequest(registry, [], bob, '&offline_token=true');
      expect(offline.status).to.equal(200);
      expect(await statusesWith(bob, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(200));
      expect(await statusesWith(robot, '/v2/bob/secret/manifests/v1')).to.deep.equal(Array(SPREAD).fill(200));

      const removed = await cli(berth, ['user', 'rm', 'bob']);
      expect(removed).to.include('bob');

      // Nothing that was bob's answers any more, on any worker, without waiting.
      expect(await statusesWith(bob, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(401));
      expect(await statusesWith(robot, '/v2/bob/secret/manifests/v1')).to.deep.equal(Array(SPREAD).fill(401));
      expect((await tokenRequest(registry, [], robot)).status, 'the robot bob+ci').to.equal(401);
      expect((await refresh(offline.json.refresh_token)).status, 'the refresh token').to.equal(401);
      expect(await cli(berth, ['org', 'show', 'acme'])).to.equal('alice admin\n');

      // A stranger cannot take the name, nor one that differs only by punctuation.
      for (const name of ['bob', 'b-ob', 'b.o_b']) {
        const res = await signUp(name, 'stranger-password-1');
        expect(res.status, `sign-up as ${name}: ${res.text}`).to.equal(409);
      }
      expect((await tokenRequest(registry, [], ['bob', 'stranger-password-1'])).status).to.equal(401);

      // An admin may give the name out again; the new bob inherits no role and no robot.
      await addUser(berth, 'bob', 'new-bob-password-1');
      const token = await tokenFor(registry, ['repository:acme/private:pull,push,delete'], ['bob', 'new-bob-password-1']);
      expect(decodeJwt(token).claims.access).to.deep.equal([]);
      expect((await tokenRequest(registry, [], robot)).status, 'the robot bob+ci after bob is re-created').to.equal(401);
      expect((await refresh(offline.json.refresh_token)).status, 'the old refresh token after bob is re-created').to.equal(401);
    });
  });

  describe('Basic credentials sent straight to /v2', function () {
    it('stop working on the next request after user passwd', async function () {
      expect(await statusesWith(alice, '/v2/alice/app/manifests/v1')).to.deep.equal(Array(SPREAD).fill(200));
      await cli(berth, ['user', 'passwd', 'alice', '--password-stdin'], 'alice-password-2\n');
      expect(await statusesWith(alice, '/v2/alice/app/manifests/v1')).to.deep.equal(Array(SPREAD).fill(401));
      expect(await statusesWith(['alice', 'alice-password-2'], '/v2/alice/app/manifests/v1')).to.deep.equal(Array(SPREAD).fill(200));
    });

    it('stop working on the next request after token revoke, for a personal access token and a robot', async function () {
      const patOut = await cli(berth, ['token', 'create', '--user', 'alice', '--expires-in', 'never']);
      const pat: [string, string] = ['alice', /token: (\S+)/.exec(patOut)![1]!];
      const robotOut = await cli(berth, ['token', 'create', '--robot', 'acme+deploy', '--scope', 'repository:acme/*:pull', '--expires-in', 'never']);
      const robot: [string, string] = ['acme+deploy', /token: (\S+)/.exec(robotOut)![1]!];
      expect(await statusesWith(pat, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(200));
      expect(await statusesWith(robot, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(200));
      await cli(berth, ['token', 'revoke', /id: (\S+)/.exec(patOut)![1]!]);
      await cli(berth, ['token', 'revoke', 'acme+deploy']);
      expect(await statusesWith(pat, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(401));
      expect(await statusesWith(robot, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(401));
    });

    it('lose admin rights on the next request after the admin flag is taken away', async function () {
      // Not a command of its own: removing and re-creating the account is how an operator demotes.
      expect(await statusesWith(admin, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(200));
      await cli(berth, ['user', 'rm', 'root-admin']);
      await addUser(berth, 'root-admin', 'admin-password-1');
      expect(await statusesWith(admin, '/v2/acme/private/manifests/v1')).to.deep.equal(Array(SPREAD).fill(401));
    });
  });
});
