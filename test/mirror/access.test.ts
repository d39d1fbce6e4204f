// Who may pull through a mirror. In private mode the mirror is not an open proxy: its repositories are in
// the namespace of its prefix, so an organisation of that name (made by an admin) grants pull to its
// members, as Harbor's proxy-cache project does; anyone else is refused before the upstream is asked.
// In public-index mode nobody may sign up for a mirror's namespace (it would own the mirror's repositories).
// A token asked for a pull alone of an unprefixed name the docker mirror serves (docker's registry-mirrors
// ask for `library/alpine`) grants the mirrored repository, never a local one of the asked name.
import { expect } from 'chai';
import { addUser, AuthorizedRegistry, bearer, cli, decodeJwt, tokenFor } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { errorCode, Registry } from '../helpers/registry.ts';
import { getManifest, mirrorsEnv, upstreamRequests, useMirror } from './helpers.ts';

describe('pull-through cache: access', function () {
  this.timeout(120_000);
  const suite = useMirror((upstream) => [{ prefix: 'dist', upstream, dockerMirror: true }], { BERTH_MODE: 'private' });
  const { origin, mirror } = suite;
  let open: TestBerth;

  before(async () => {
    open = await startBerth({ env: { ...mirrorsEnv([{ prefix: 'dist', upstream: suite.upstream.url }]), BERTH_MODE: 'public-index' } });
    await addUser(suite.berth, 'bob', 'bob-password-1');
    await addUser(suite.berth, 'eve', 'eve-password-1');
    await cli(suite.berth, ['org', 'add', 'dist']);
    await cli(suite.berth, ['org', 'member', 'dist', 'bob', '--role', 'write']);
    await origin.pushImage('team/app', 'v1', { layers: ['private layer'] });
  });
  after(async () => {
    await open?.destroy();
  });

  it('refuses anonymous and non-members with 401 before the upstream is asked', async () => {
    const before = upstreamRequests(suite.upstream).length;
    const anonymous = await getManifest(mirror, 'dist/team/app', 'v1');
    expect(anonymous.status, anonymous.text).to.equal(401);
    expect(errorCode(anonymous)).to.equal('UNAUTHORIZED');
    const eve = await tokenFor(mirror, ['repository:dist/team/app:pull'], ['eve', 'eve-password-1']);
    const refused = await getManifest(mirror, 'dist/team/app', 'v1', bearer(eve));
    expect(refused.status, refused.text).to.equal(401);
    expect(refused.headers['www-authenticate']).to.contain('insufficient_scope');
    expect(upstreamRequests(suite.upstream, before)).to.deep.equal([]);
  });

  it("lets a member of the prefix's organisation pull through, and nothing more", async () => {
    const bob = await tokenFor(mirror, ['repository:dist/team/app:pull,push'], ['bob', 'bob-password-1']);
    const res = await getManifest(mirror, 'dist/team/app', 'v1', bearer(bob));
    expect(res.status, res.text).to.equal(200);
    const layer = (JSON.parse(res.text) as { layers: { digest: string }[] }).layers[0]!.digest;
    const blob = await mirror.request('GET', `/v2/dist/team/app/blobs/${layer}`, { headers: bearer(bob) });
    expect(blob.status).to.equal(200);
    expect(blob.text).to.equal('private layer');
    // A write role in the organisation does not make the mirror writable.
    const push = await mirror.request('POST', '/v2/dist/team/app/blobs/uploads/', { headers: bearer(bob) });
    expect(push.status).to.equal(403);
    expect(errorCode(push)).to.equal('DENIED');
    // Eve still may not pull what bob's pull has cached.
    const eve = await tokenFor(mirror, ['repository:dist/team/app:pull'], ['eve', 'eve-password-1']);
    expect((await getManifest(mirror, 'dist/team/app', 'v1', bearer(eve))).status).to.equal(401);
  });

  it('grants a pull of an unprefixed name as the docker mirror serves it, and a push (or a local repository) as itself', async () => {
    const access = async (scope: string, who: [string, string]) => decodeJwt(await tokenFor(mirror, [scope], who)).claims.access as unknown[];
    const bob = await tokenFor(mirror, ['repository:team/app:pull'], ['bob', 'bob-password-1']);
    expect(decodeJwt(bob).claims.access).to.deep.equal([{ type: 'repository', name: 'dist/team/app', actions: ['pull'] }]);
    const res = await getManifest(mirror, 'team/app', 'v1', bearer(bob));
    expect(res.status, res.text).to.equal(200);
    expect(await access('repository:team/app:pull', ['eve', 'eve-password-1'])).to.deep.equal([]);
    // A push is local: bob has no rights on team/, and the mirror's grant does not lend him any.
    expect(await access('repository:team/app:pull,push', ['bob', 'bob-password-1'])).to.deep.equal([]);
    // Once a local repository has the name, a pull of it is the local one's (bob may not pull it).
    await addUser(suite.berth, 'carol', 'carol-password-1', true);
    const admin = await tokenFor(mirror, ['repository:team/app:pull,push'], ['carol', 'carol-password-1']);
    await new AuthorizedRegistry(mirror.base, bearer(admin)).pushImage('team/app', 'local', { layers: ['a local layer'] });
    expect(await access('repository:team/app:pull', ['bob', 'bob-password-1'])).to.deep.equal([]);
    expect((await getManifest(mirror, 'team/app', 'v1', bearer(bob))).status).to.equal(401);
  });

  it("refuses a sign-up for a mirror's namespace (public-index mode)", async () => {
    const signUp = (username: string) =>
      new Registry(open.url).request('POST', '/api/v1/users', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password: 'a-password-123' }) });
    expect((await signUp('dist')).status).to.equal(409);
    expect((await signUp('d-ist')).status).to.equal(409);
    expect((await signUp('distinct')).status).to.equal(201);
  });
});
