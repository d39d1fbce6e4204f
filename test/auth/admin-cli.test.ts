// The admin commands (berth user | org | token | repo) on a running server's storage, as an operator uses them.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { addUser, cli, tokenRequest } from '../helpers/auth.ts';
import { Registry } from '../helpers/registry.ts';

describe('auth: the admin commands', function () {
  let berth: TestBerth;
  let registry: Registry;

  before(async function () {
    berth = await startBerth({ env: { BERTH_MODE: 'private' } });
    registry = new Registry(berth.url);
    await addUser(berth, 'alice', 'alice-password-1');
  });

  after(() => berth?.destroy());

  const refresh = (refreshToken: string) =>
    registry.request('POST', '/token', {
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, service: 'berth' }).toString(),
    });

  it('explain what is wrong, with exit code 1, and change nothing', async function () {
    const noPassword = await berth.cli(['user', 'add', 'bob']);
    expect(noPassword.code).to.equal(1);
    expect(noPassword.stderr).to.include('--password-stdin');
    const taken = await berth.cli(['user', 'add', 'alice', '--password-stdin'], 'another-password-1\n');
    expect(taken.code).to.equal(1);
    expect(taken.stderr).to.include('alice is taken');
    const badScope = await berth.cli(['token', 'create', '--user', 'alice', '--scope', 'repository:../x:pull']);
    expect(badScope.code).to.equal(1);
    expect(badScope.stderr).to.include('expected repository:');
    const noUser = await berth.cli(['org', 'add', 'acme', '--owner', 'nobody']);
    expect(noUser.code).to.equal(1);
    expect((await tokenRequest(registry, [], ['alice', 'alice-password-1'])).status).to.equal(200);
  });

  it('passwd changes the password and ends refresh tokens got with the old one', async function () {
    const before = await tokenRequest(registry, [], ['alice', 'alice-password-1'], '&offline_token=true');
    expect((await refresh(before.json.refresh_token)).status).to.equal(200);
    await cli(berth, ['user', 'passwd', 'alice', '--password-stdin'], 'alice-password-2\n');
    expect((await tokenRequest(registry, [], ['alice', 'alice-password-1'])).status).to.equal(401);
    expect((await tokenRequest(registry, [], ['alice', 'alice-password-2'])).status).to.equal(200);
    expect((await refresh(before.json.refresh_token)).status).to.equal(401);
  });

  it('rm removes the user, their tokens, and the refresh tokens of the account; a new user of that name does not revive them', async function () {
    await addUser(berth, 'carol', 'carol-password-1');
    const out = await cli(berth, ['token', 'create', '--user', 'carol', '--expires-in', 'never']);
    const pat = /token: (\S+)/.exec(out)![1]!;
    const offline = await tokenRequest(registry, [], ['carol', 'carol-password-1'], '&offline_token=true');
    await cli(berth, ['user', 'rm', 'carol']);
    await addUser(berth, 'carol', 'carol-password-1');
    expect((await tokenRequest(registry, [], ['carol', pat])).status).to.equal(401);
    expect((await refresh(offline.json.refresh_token)).status).to.equal(401);
    expect(await cli(berth, ['token', 'list', 'carol'])).to.equal('');
  });

  it('org and member commands show the roles they set', async function () {
    await addUser(berth, 'bob', 'bob-password-1');
    await cli(berth, ['org', 'add', 'acme', '--owner', 'alice']);
    await cli(berth, ['org', 'member', 'acme', 'bob', '--role', 'write']);
    expect(await cli(berth, ['org', 'show', 'acme'])).to.equal('alice admin\nbob write\n');
    await cli(berth, ['org', 'member', 'acme', 'bob', '--remove']);
    expect(await cli(berth, ['org', 'show', 'acme'])).to.equal('alice admin\n');
    expect(await cli(berth, ['user', 'list'])).to.equal('alice\nbob\ncarol\n');
    expect(await cli(berth, ['user', 'list', '--limit', '2']), 'a page').to.equal('alice\nbob\n');
    expect(await cli(berth, ['user', 'list', '--after', 'bob']), 'the next').to.equal('carol\n');
    expect(await cli(berth, ['user', 'list', '--after', 'alice', '--limit', '1'])).to.equal('bob\n');
  });
});
