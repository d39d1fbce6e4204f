// An upload session belongs to the repository and the principal that opened it: another member with push
// rights, a robot, the anonymous puller or another repository's URL finds no such session.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, basic, bearer, cli, tokenFor } from '../helpers/auth.ts';
import { errorCode, Registry, sha256, type RawResponse } from '../helpers/registry.ts';

describe('auth: an upload session is its opener\'s alone', function () {
  let berth: TestBerth;
  let alice: AuthorizedRegistry;
  let bob: AuthorizedRegistry;
  let robot: AuthorizedRegistry;

  before(async function () {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index' } });
    await addUser(berth, 'alice', 'alice-password-1');
    await addUser(berth, 'bob', 'bob-password-1');
    await cli(berth, ['org', 'add', 'acme', '--owner', 'alice']);
    await cli(berth, ['org', 'member', 'acme', 'bob', '--role', 'admin']);
    const created = await cli(berth, ['token', 'create', '--robot', 'acme+ci', '--scope', 'repository:acme/*:pull,push,delete', '--expires-in', 'never']);
    const secret = /^token: (\S+)$/m.exec(created)?.[1];
    if (!secret) throw new Error(`no robot secret in ${created}`);
    alice = new AuthorizedRegistry(berth.url, { Authorization: basic('alice', 'alice-password-1') });
    bob = new AuthorizedRegistry(berth.url, { Authorization: basic('bob', 'bob-password-1') });
    robot = new AuthorizedRegistry(berth.url, { Authorization: basic('acme+ci', secret) });
  });
  after(() => berth?.destroy());

  /** GET, PATCH, PUT and DELETE of the session at `path`, as `who`. */
  async function everyMethod(who: Registry, path: string): Promise<RawResponse[]> {
    return [
      await who.request('GET', path),
      await who.request('PATCH', path, { body: 'stolen', headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': '5-10' } }),
      await who.request('PUT', `${path}?digest=${sha256('firststolen')}`, { body: '', headers: { 'Content-Type': 'application/octet-stream' } }),
      await who.request('DELETE', path),
    ];
  }

  function allUnknown(responses: RawResponse[], who: string): void {
    for (const res of responses) {
      expect(res.status, `${who}: ${res.text}`).to.equal(404);
      expect(errorCode(res)).to.equal('BLOB_UPLOAD_UNKNOWN');
    }
  }

  it('another user, a robot and the anonymous caller, each with rights on the repository, find no session; the opener finishes it', async () => {
    await alice.pushBlob('acme/app', 'makes the repository public');
    const location = await alice.startUpload('acme/app');
    expect((await alice.request('PATCH', location, { body: 'first', headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': '0-4' } })).status).to.equal(202);

    allUnknown(await everyMethod(bob, location), 'another admin of the organisation');
    allUnknown(await everyMethod(robot, location), 'the organisation\'s robot');
    const anonymous = new AuthorizedRegistry(berth.url, bearer(await tokenFor(new Registry(berth.url), ['repository:acme/app:pull'])));
    const status = await anonymous.request('GET', location);
    expect(status.status, 'the anonymous puller reads no status').to.equal(404);

    const mine = await alice.request('GET', location);
    expect(mine.status).to.equal(204);
    expect(mine.headers.range, 'nothing was appended by others').to.equal('0-4');
    const done = await alice.request('PUT', `${location}?digest=${sha256('first')}`);
    expect(done.status, done.text).to.equal(201);
  });

  it('the opener cannot use the session through another repository\'s URL, even one it may push to', async () => {
    const location = await alice.startUpload('acme/app');
    allUnknown(await everyMethod(alice, location.replace('/v2/acme/app/', '/v2/acme/other/')), 'another repository');
    allUnknown(await everyMethod(alice, location.replace('/v2/acme/app/', '/v2/alice/app/')), 'another namespace');
    expect((await alice.request('GET', location)).headers.range).to.equal('0-0');
  });

  it('a session that a robot opened is the robot\'s, not its organisation\'s members\'', async () => {
    const location = await robot.startUpload('acme/ci');
    allUnknown(await everyMethod(alice, location), 'the organisation\'s owner');
    expect((await robot.request('DELETE', location)).status).to.equal(204);
  });
});
