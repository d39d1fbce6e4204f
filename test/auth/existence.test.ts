// No leaks: to someone without access, a private repository answers exactly as one that does not exist,
// on every API route, through mounts, referrers and the catalog; and the private mode shuts out strangers.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, bearer, cli, decodeJwt, tokenFor, tokenRequest } from '../helpers/auth.ts';
import { Registry, sha256, type RawResponse } from '../helpers/registry.ts';

/** Every /v2 route, with the method and path for repository `name`. */
function routes(name: string, digest: string, blob: string): Array<[string, string, Record<string, string>?, string?]> {
  return [
    ['GET', `/v2/${name}/manifests/v1`],
    ['HEAD', `/v2/${name}/manifests/v1`],
    ['GET', `/v2/${name}/manifests/${digest}`],
    ['HEAD', `/v2/${name}/manifests/${digest}`],
    ['PUT', `/v2/${name}/manifests/v9`, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, '{}'],
    ['DELETE', `/v2/${name}/manifests/${digest}`],
    ['GET', `/v2/${name}/blobs/${blob}`],
    ['HEAD', `/v2/${name}/blobs/${blob}`],
    ['DELETE', `/v2/${name}/blobs/${blob}`],
    ['POST', `/v2/${name}/blobs/uploads/`],
    ['POST', `/v2/${name}/blobs/uploads/?digest=${sha256('y')}`, { 'Content-Type': 'application/octet-stream' }, 'y'],
    ['GET', `/v2/${name}/blobs/uploads/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`],
    ['PATCH', `/v2/${name}/blobs/uploads/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`, { 'Content-Type': 'application/octet-stream' }, 'y'],
    ['PUT', `/v2/${name}/blobs/uploads/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA?digest=${sha256('y')}`],
    ['DELETE', `/v2/${name}/blobs/uploads/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`],
    ['GET', `/v2/${name}/tags/list`],
    ['GET', `/v2/${name}/referrers/${digest}`],
  ];
}

/** What a response shows a client, minus what differs between any two requests (dates, request ids). */
function visible(res: RawResponse, name: string, placeholder: string): string {
  const headers = { ...res.headers };
  delete headers.date;
  delete headers['x-request-id'];
  return JSON.stringify({ status: res.status, headers, body: res.text }).replaceAll(name, placeholder);
}

describe('auth: a private repository is indistinguishable from a missing one', function () {
  let berth: TestBerth;
  let registry: Registry;
  let manifestDigest: string;
  let layer: string;
  const alice: [string, string] = ['alice', 'alice-password-1'];
  const bob: [string, string] = ['bob', 'bob-password-1'];

  before(async function () {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index' } });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    await addUser(berth, ...bob);
    const owner = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/secret:pull,push', 'repository:alice/open:pull,push'], alice)));
    const pushed = await owner.pushImage('alice/secret', 'v1', { layers: ['private layer'] });
    manifestDigest = pushed.digest;
    layer = pushed.layers[0]!;
    await owner.pushImage('alice/open', 'v1');
    // A referrer, so the private repository's referrers list is not empty.
    await owner.pushImage('alice/secret', 'sig', { extra: { subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: pushed.manifest.length } } });
    await cli(berth, ['repo', 'visibility', 'alice/secret', 'private']);
  });

  after(() => berth?.destroy());

  for (const who of ['anonymous', 'bob'] as const) {
    it(`every route answers ${who} the same for alice/secret as for alice/absent (with and without a token)`, async function () {
      const credentials = who === 'bob' ? bob : undefined;
      const compared: string[] = [];
      for (const withToken of [false, true]) {
        const tokenSecret = withToken ? await tokenFor(registry, ['repository:alice/secret:pull,push,delete'], credentials) : undefined;
        const tokenMissing = withToken ? await tokenFor(registry, ['repository:alice/absent:pull,push,delete'], credentials) : undefined;
        const secretRoutes = routes('alice/secret', manifestDigest, layer);
        const missingRoutes = routes('alice/absent', manifestDigest, layer);
        for (let i = 0; i < secretRoutes.length; i++) {
          const [method, path, headers, body] = secretRoutes[i]!;
          const a = await registry.request(method, path, { headers: { ...headers, ...(tokenSecret ? bearer(tokenSecret) : {}) }, body });
          const [, missingPath] = missingRoutes[i]!;
          const b = await registry.request(method, missingPath, { headers: { ...headers, ...(tokenMissing ? bearer(tokenMissing) : {}) }, body });
          expect(a.status, `${method} ${path}`).to.be.oneOf([401, 404]);
          expect(visible(a, 'alice/secret', 'NAME'), `${method} ${path}`).to.equal(visible(b, 'alice/absent', 'NAME'));
          compared.push(`${method} ${path}`);
        }
      }
      expect(compared).to.have.length(34);
    });
  }

  it('does not mount from a private repository the caller may not pull: the same session as from a missing one', async function () {
    const asBob = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:bob/copy:pull,push', 'repository:alice/secret:pull'], bob)));
    const fromSecret = await asBob.request('POST', `/v2/bob/copy/blobs/uploads/?mount=${layer}&from=alice/secret`);
    const fromMissing = await asBob.request('POST', `/v2/bob/copy/blobs/uploads/?mount=${layer}&from=alice/absent`);
    const withoutFrom = await asBob.request('POST', `/v2/bob/copy/blobs/uploads/?mount=${layer}`);
    for (const res of [fromSecret, fromMissing, withoutFrom]) expect(res.status).to.equal(202);
    expect((await asBob.request('HEAD', `/v2/bob/copy/blobs/${layer}`)).status).to.equal(404);
    // Its owner may mount it.
    const asAlice = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/copy:pull,push', 'repository:alice/secret:pull'], alice)));
    expect((await asAlice.request('POST', `/v2/alice/copy/blobs/uploads/?mount=${layer}&from=alice/secret`)).status).to.equal(201);
  });

  it('lists in the catalog only what the caller may pull', async function () {
    const catalog = async (credentials?: [string, string]) => {
      const token = await tokenFor(registry, ['registry:catalog:*'], credentials);
      return (await registry.request('GET', '/v2/_catalog', { headers: bearer(token) })).json.repositories as string[];
    };
    expect(await catalog()).to.include('alice/open').and.not.include('alice/secret');
    expect(await catalog(bob)).to.include('alice/open').and.not.include('alice/secret');
    expect(await catalog(alice)).to.include.members(['alice/open', 'alice/secret']);
  });

  describe('private mode', function () {
    let priv: TestBerth;
    let reg: Registry;

    before(async function () {
      priv = await startBerth({ env: { BERTH_MODE: 'private' } });
      reg = new Registry(priv.url);
      await addUser(priv, ...alice);
      await addUser(priv, ...bob);
    });

    after(() => priv?.destroy());

    it('has sign-up closed', async function () {
      const res = await reg.request('POST', '/api/v1/users', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'eve', password: 'eve-password-1' }) });
      expect(res.status).to.equal(403);
      expect((await tokenRequest(reg, [], ['eve', 'eve-password-1'])).status).to.equal(401);
    });

    it('gives no token without credentials', async function () {
      const res = await tokenRequest(reg, ['repository:alice/app:pull']);
      expect(res.status).to.equal(401);
      expect((await reg.request('GET', '/v2/')).status).to.equal(401);
    });

    it('makes new repositories private: another user cannot pull or list them', async function () {
      const owner = new AuthorizedRegistry(priv.url, bearer(await tokenFor(reg, ['repository:alice/app:pull,push'], alice)));
      await owner.pushImage('alice/app', 'v1');
      const access = decodeJwt(await tokenFor(reg, ['repository:alice/app:pull'], bob)).claims.access;
      expect(access).to.deep.equal([]);
      const bobCatalog = await reg.request('GET', '/v2/_catalog', { headers: bearer(await tokenFor(reg, ['registry:catalog:*'], bob)) });
      expect(bobCatalog.json.repositories).to.deep.equal([]);
      const aliceCatalog = await reg.request('GET', '/v2/_catalog', { headers: bearer(await tokenFor(reg, ['registry:catalog:*'], alice)) });
      expect(aliceCatalog.json.repositories).to.deep.equal(['alice/app']);
    });

    it('lists an organisation\'s private repositories to its members only, whatever their role', async function () {
      await cli(priv, ['org', 'add', 'crew', '--owner', 'alice']);
      const owner = new AuthorizedRegistry(priv.url, bearer(await tokenFor(reg, ['repository:crew/one:pull,push', 'repository:crew/two:pull,push'], alice)));
      await owner.pushImage('crew/one', 'v1');
      await owner.pushImage('crew/two', 'v1');
      const listed = async () =>
        (await reg.request('GET', '/v2/_catalog', { headers: bearer(await tokenFor(reg, ['registry:catalog:*'], bob)) })).json.repositories as string[];
      expect(await listed()).to.not.include.members(['crew/one']);
      await cli(priv, ['org', 'member', 'crew', 'bob', '--role', 'read']);
      expect(await listed()).to.include.members(['crew/one', 'crew/two']);
      await cli(priv, ['org', 'member', 'crew', 'bob', '--remove']);
      expect((await listed()).filter((name) => name.startsWith('crew/'))).to.deep.equal([]);
    });
  });
});
