// What a bearer token is trusted for: only our key verifies it, whatever keys its header carries; and
// every route asks the right that its action needs (a DELETE is a delete, never a push).
import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, bearer, parseChallenge, tokenFor } from '../helpers/auth.ts';
import { Registry } from '../helpers/registry.ts';

describe('auth: what a bearer token is trusted for', function () {
  let berth: TestBerth;
  let registry: Registry;
  const alice: [string, string] = ['alice', 'alice-password-1'];

  before(async function () {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index' } });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    const owner = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/app:pull,push'], alice)));
    await owner.pushImage('alice/app', 'v1');
  });

  after(() => berth?.destroy());

  describe('a token header that carries its own key', function () {
    const claims = () => {
      const now = Math.floor(Date.now() / 1000);
      const access = [{ type: 'repository', name: 'alice/app', actions: ['pull', 'push', 'delete'] }];
      return { iss: 'berth', sub: 'alice', aud: 'berth', iat: now, nbf: now - 5, exp: now + 300, jti: 'x', access, berth: { k: 'user' } };
    };
    const jwks = async () => (await registry.request('GET', '/.well-known/jwks.json')).json.keys[0];

    async function expectInvalid(token: string): Promise<void> {
      const res = await registry.request('GET', '/v2/alice/app/manifests/v1', { headers: bearer(token) });
      expect(res.status, res.text).to.equal(401);
      expect(parseChallenge(res.headers['www-authenticate']).error).to.equal('invalid_token');
    }

    it('is refused when the embedded key (jwk, x5c, jku, x5u) is the signer\'s and not ours', async function () {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const kid = (await jwks()).kid as string;
      const own = publicKey.export({ format: 'jwk' });
      const der = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
      for (const header of [{ jwk: own }, { x5c: [der] }, { jku: `${berth.url}/.well-known/jwks.json` }, { x5u: `${berth.url}/x.pem` }]) {
        await expectInvalid(jwt.sign(claims(), privateKey, { algorithm: 'ES256', keyid: kid, noTimestamp: true, header: { alg: 'ES256', kid, ...header } as jwt.JwtHeader }));
      }
    });

    it('is refused even when signed with our key: a header naming keys is never honoured, so never accepted', async function () {
      const pem = (await berth.storage.getContent('/auth/signing-key.pem'))!.toString();
      const ours = await jwks();
      for (const header of [{ jwk: { kty: ours.kty, crv: ours.crv, x: ours.x, y: ours.y } }, { jku: 'https://attacker.example/jwks.json' }, { crit: ['exp'] }]) {
        await expectInvalid(jwt.sign(claims(), pem, { algorithm: 'ES256', keyid: ours.kid, noTimestamp: true, header: { alg: 'ES256', kid: ours.kid, ...header } as jwt.JwtHeader }));
      }
      // The same token without them is good: the refusal is the header's.
      const plain = jwt.sign(claims(), pem, { algorithm: 'ES256', keyid: ours.kid, noTimestamp: true });
      expect((await registry.request('GET', '/v2/alice/app/manifests/v1', { headers: bearer(plain) })).status).to.equal(200);
    });
  });

  describe('the right each route needs', function () {
    it('cancelling an upload (DELETE) needs delete, as every DELETE does: a push token is not enough', async function () {
      const pusher = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/app:pull,push'], alice)));
      const location = await pusher.startUpload('alice/app');
      const path = new URL(location, berth.url).pathname;
      const refused = await pusher.request('DELETE', path);
      expect(refused.status, refused.text).to.equal(401);
      const challenge = parseChallenge(refused.headers['www-authenticate']);
      expect(challenge.error).to.equal('insufficient_scope');
      expect(challenge.scope).to.equal('repository:alice/app:delete');
      expect((await pusher.request('GET', path)).status, 'the session is still there').to.equal(204);
      const deleter = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/app:delete'], alice)));
      expect((await deleter.request('DELETE', path)).status).to.equal(204);
    });
  });
});
