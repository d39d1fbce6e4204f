// Docker token authentication against a real Berth in public-index mode: the challenge, the token
// endpoint (GET and the OAuth2 POST), what tokens grant, and the attacks that must all fail.
import { expect } from 'chai';
import { createHash, generateKeyPairSync, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, bearer, cli, decodeJwt, parseChallenge, tokenFor, tokenRequest, basic } from '../helpers/auth.ts';
import { errorCode, Registry, sha256 } from '../helpers/registry.ts';

describe('auth: Docker token authentication (public-index mode)', function () {
  let berth: TestBerth;
  let registry: Registry;
  let auditDir: string;
  const alice: [string, string] = ['alice', 'alice-password-1'];
  const bob: [string, string] = ['bob', 'bob-password-1'];
  const carol: [string, string] = ['carol', 'carol-password-1'];
  const admin: [string, string] = ['root-admin', 'admin-password-1'];

  /** A client holding a token for `scopes`, got with `credentials` (or anonymously). */
  async function clientFor(scopes: string[], credentials?: [string, string]): Promise<AuthorizedRegistry> {
    return new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, scopes, credentials)));
  }

  before(async function () {
    auditDir = mkdtempSync(join(tmpdir(), 'berth-audit-'));
    berth = await startBerth({
      env: {
        BERTH_MODE: 'public-index',
        BERTH_AUDIT_LOG: join(auditDir, 'audit.log'),
        BERTH_LOGIN_FAILURES_PER_ACCOUNT: '5',
        BERTH_LOGIN_FAILURES_PER_ADDRESS: '40',
      },
    });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    await addUser(berth, ...bob);
    await addUser(berth, ...carol);
    await addUser(berth, ...admin, true);
    await cli(berth, ['org', 'add', 'acme', '--owner', 'alice']);
    await cli(berth, ['org', 'member', 'acme', 'bob', '--role', 'read']);
    await cli(berth, ['org', 'member', 'acme', 'carol', '--role', 'write']);
    const a = await clientFor(['repository:alice/app:pull,push', 'repository:alice/secret:pull,push'], alice);
    await a.pushImage('alice/app', 'v1');
    await a.pushImage('alice/secret', 'v1', { layers: ['secret layer'] });
    await cli(berth, ['repo', 'visibility', 'alice/secret', 'private']);
  });

  after(async function () {
    await berth?.destroy();
    if (auditDir) rmSync(auditDir, { recursive: true, force: true });
  });

  describe('the challenge and the token endpoint', function () {
    it('answers /v2/ without a token with 401 and a Bearer challenge naming the realm and service', async function () {
      const res = await registry.request('GET', '/v2/');
      expect(res.status).to.equal(401);
      expect(errorCode(res)).to.equal('UNAUTHORIZED');
      const challenge = parseChallenge(res.headers['www-authenticate']);
      expect(challenge.realm).to.equal(`${berth.url}/token`);
      expect(challenge.service).to.equal('berth');
      expect(res.headers['docker-distribution-api-version']).to.equal('registry/2.0');
    });

    it('names the scope a repository route needs in its challenge', async function () {
      const pull = await registry.request('GET', '/v2/alice/app/manifests/v1');
      expect(parseChallenge(pull.headers['www-authenticate']).scope).to.equal('repository:alice/app:pull');
      const push = await registry.request('POST', '/v2/alice/app/blobs/uploads/');
      expect(parseChallenge(push.headers['www-authenticate']).scope).to.equal('repository:alice/app:pull,push');
      const catalog = await registry.request('GET', '/v2/_catalog');
      expect(parseChallenge(catalog.headers['www-authenticate']).scope).to.equal('registry:catalog:*');
    });

    it('issues an ES256 JWT with the spec\'s claims and a kid that is the RFC 7638 thumbprint of the published key', async function () {
      const res = await tokenRequest(registry, ['repository:alice/app:pull']);
      expect(res.status).to.equal(200);
      expect(res.json.token).to.equal(res.json.access_token);
      expect(res.json.expires_in).to.be.at.least(60);
      expect(new Date(res.json.issued_at).toISOString()).to.equal(res.json.issued_at);
      const { header, claims } = decodeJwt(res.json.token);
      expect(header.alg).to.equal('ES256');
      const jwks = (await registry.request('GET', '/.well-known/jwks.json')).json;
      const key = jwks.keys[0];
      const thumbprint = createHash('sha256')
        .update(JSON.stringify({ crv: key.crv, kty: key.kty, x: key.x, y: key.y }))
        .digest('base64url');
      expect(header.kid).to.equal(thumbprint).and.to.equal(key.kid);
      expect(claims).to.include({ iss: 'berth', sub: '', aud: 'berth' });
      for (const claim of ['exp', 'nbf', 'iat']) expect(claims[claim]).to.be.a('number');
      expect(claims.exp - claims.iat).to.equal(res.json.expires_in);
      expect(claims.jti).to.be.a('string').with.length.greaterThan(10);
      expect(claims.access).to.deep.equal([{ type: 'repository', name: 'alice/app', actions: ['pull'] }]);
      // The published key verifies the token.
      const pem = createPublicKey({ key, format: 'jwk' });
      expect(() => jwt.verify(res.json.token, pem, { algorithms: ['ES256'] })).not.to.throw();
    });

    it('logs in as docker login does (no scope, offline_token) and the token opens /v2/', async function () {
      const res = await tokenRequest(registry, [], alice, '&offline_token=true&client_id=docker&account=alice');
      expect(res.status).to.equal(200);
      expect(res.json.refresh_token).to.be.a('string');
      expect(decodeJwt(res.json.token).claims.sub).to.equal('alice');
      const ping = await registry.request('GET', '/v2/', { headers: bearer(res.json.token) });
      expect(ping.status).to.equal(200);
    });

    it('refuses a wrong password and an unknown user alike', async function () {
      const wrong = await tokenRequest(registry, [], ['alice', 'not-her-password']);
      const unknown = await tokenRequest(registry, [], ['nobody-here', 'not-her-password']);
      expect(wrong.status).to.equal(401);
      expect(unknown.status).to.equal(401);
      expect(wrong.text).to.equal(unknown.text);
    });

    it('answers the OAuth2 POST form: password grant with access_type=offline, then refresh_token grant', async function () {
      const form = (fields: Record<string, string>) =>
        registry.request('POST', '/token', {
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(fields).toString(),
        });
      const first = await form({ grant_type: 'password', username: 'alice', password: alice[1], service: 'berth', client_id: 'containerd', access_type: 'offline', scope: 'repository:alice/secret:pull' });
      expect(first.status, first.text).to.equal(200);
      expect(first.json.access_token).to.be.a('string');
      expect(decodeJwt(first.json.access_token).claims.access).to.deep.equal([{ type: 'repository', name: 'alice/secret', actions: ['pull'] }]);
      const second = await form({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token, service: 'berth', scope: 'repository:alice/secret:pull' });
      expect(second.status, second.text).to.equal(200);
      const pulled = await registry.request('GET', '/v2/alice/secret/manifests/v1', { headers: bearer(second.json.access_token) });
      expect(pulled.status).to.equal(200);
      const bad = await form({ grant_type: 'client_credentials' });
      expect(bad.status).to.equal(400);
    });
  });

  describe('sign-up (open in public-index mode)', function () {
    const signUp = (username: string, password: string) =>
      registry.request('POST', '/api/v1/users', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }) });

    it('creates an account that can log in and push to its own namespace', async function () {
      const res = await signUp('dora', 'dora-password-1');
      expect(res.status, res.text).to.equal(201);
      const client = await clientFor(['repository:dora/app:pull,push'], ['dora', 'dora-password-1']);
      await client.pushImage('dora/app', 'v1');
    });

    it('refuses a taken name, a reserved one, an invalid one and a short password, with the reason', async function () {
      expect((await signUp('alice', 'another-password-1')).status).to.equal(409);
      expect((await signUp('acme', 'another-password-1')).status, 'an organisation name').to.equal(409);
      const reserved = await signUp('library', 'another-password-1');
      expect(reserved.status).to.equal(400);
      expect(reserved.json.errors[0].message).to.include('reserved');
      expect((await signUp('Not/A/Name', 'another-password-1')).status).to.equal(400);
      const short = await signUp('shorty', 'short');
      expect(short.status).to.equal(400);
      expect(short.json.errors[0].message).to.include('8 characters');
      // Alice's account is unchanged.
      expect((await tokenRequest(registry, [], alice)).status).to.equal(200);
    });
  });

  describe('sign-up limits', function () {
    it('allows at most 10 sign-up attempts an hour from one address, through the API and the web form together', async function () {
      const statuses: number[] = [];
      for (let i = 0; i < 12 && !statuses.includes(429); i++) {
        const res = await registry.request('POST', '/api/v1/users', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: `many${i}`, password: 'many-password-1' }) });
        statuses.push(res.status);
      }
      expect(statuses).to.include(429);
      expect(statuses.filter((s) => s === 201).length).to.be.at.most(10);
      const form = await registry.request('GET', '/signup');
      const cookie = (form.headers['set-cookie'] ?? '').split(/,(?=\s*\w+=)/).map((c) => c.split(';')[0]!.trim()).join('; ');
      const csrf = /name="_csrf" value="([^"]+)"/.exec(form.text)![1]!;
      const web = await registry.request('POST', '/signup', {
        headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ username: 'webmany', password: 'many-password-1', _csrf: csrf }).toString(),
      });
      expect(web.status).to.equal(429);
      expect((await tokenRequest(registry, [], ['webmany', 'many-password-1'])).status).to.equal(401);
    });
  });

  describe('what a token grants: only what was asked and what the account may do', function () {
    it('lets anyone pull a public repository, and its owner push to it', async function () {
      const anonymous = await clientFor(['repository:alice/app:pull']);
      expect((await anonymous.request('GET', '/v2/alice/app/manifests/v1')).status).to.equal(200);
      const owner = await clientFor(['repository:alice/app:pull,push'], alice);
      await owner.pushImage('alice/app', 'v2');
    });

    it('grants no push on another user\'s namespace, and none on library/ except to admins', async function () {
      const res = await tokenRequest(registry, ['repository:bob/thing:pull,push', 'repository:library/base:push'], alice);
      expect(decodeJwt(res.json.token).claims.access).to.deep.equal([]);
      const asAdmin = await tokenRequest(registry, ['repository:library/base:pull,push'], admin);
      expect(decodeJwt(asAdmin.json.token).claims.access).to.deep.equal([{ type: 'repository', name: 'library/base', actions: ['pull', 'push'] }]);
    });

    it('applies organisation roles: read pulls, write pushes, only admins and owners delete', async function () {
      const owner = await clientFor(['repository:acme/tool:pull,push,delete'], alice);
      await owner.pushImage('acme/tool', 'v1');
      await cli(berth, ['repo', 'visibility', 'acme/tool', 'private']);
      const scope = ['repository:acme/tool:pull,push,delete'];
      expect(decodeJwt(await tokenFor(registry, scope, bob)).claims.access[0].actions).to.deep.equal(['pull']);
      expect(decodeJwt(await tokenFor(registry, scope, carol)).claims.access[0].actions).to.deep.equal(['pull', 'push']);
      expect(decodeJwt(await tokenFor(registry, scope, alice)).claims.access[0].actions).to.deep.equal(['pull', 'push', 'delete']);
      const asBob = await clientFor(scope, bob);
      expect((await asBob.request('GET', '/v2/acme/tool/manifests/v1')).status).to.equal(200);
      const writer = await clientFor(scope, carol);
      await writer.pushImage('acme/tool', 'v2');
      const del = await writer.request('DELETE', '/v2/acme/tool/manifests/v2');
      expect(del.status).to.equal(401);
      expect(parseChallenge(del.headers['www-authenticate']).error).to.equal('insufficient_scope');
      expect((await owner.request('DELETE', '/v2/acme/tool/manifests/v2')).status).to.equal(202);
    });

    it('limits a personal access token to its scopes', async function () {
      const out = await cli(berth, ['token', 'create', '--user', 'alice', '--scope', 'repository:alice/*:pull', '--expires-in', '1d']);
      const pat = /token: (\S+)/.exec(out)![1]!;
      const access = decodeJwt(await tokenFor(registry, ['repository:alice/secret:pull,push'], ['alice', pat])).claims.access;
      expect(access).to.deep.equal([{ type: 'repository', name: 'alice/secret', actions: ['pull'] }]);
      // Only its hash is stored.
      const id = /id: (\S+)/.exec(out)![1]!;
      const stored = (await berth.storage.getContent(`/auth/tokens/${id}.json`))!.toString();
      expect(stored).not.to.include(pat.split('.').pop()!);
    });

    it('lets a robot account push within its organisation\'s scopes only', async function () {
      const out = await cli(berth, ['token', 'create', '--robot', 'acme+ci', '--scope', 'repository:acme/*:pull,push']);
      const secret = /token: (\S+)/.exec(out)![1]!;
      const robot = await clientFor(['repository:acme/built:pull,push'], ['acme+ci', secret]);
      await robot.pushImage('acme/built', 'v1');
      const elsewhere = decodeJwt(await tokenFor(registry, ['repository:alice/app:push', 'repository:acme/built:delete'], ['acme+ci', secret])).claims.access;
      expect(elsewhere).to.deep.equal([]);
    });
  });

  describe('attacks, each refused and changing nothing', function () {
    const claimsFor = (access: object[], extra: object = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return { iss: 'berth', sub: 'alice', aud: 'berth', iat: now, nbf: now - 5, exp: now + 300, jti: 'x', access, ...extra };
    };
    const secretAccess = [{ type: 'repository', name: 'alice/secret', actions: ['pull', 'push', 'delete'] }];

    async function kid(): Promise<string> {
      return (await registry.request('GET', '/.well-known/jwks.json')).json.keys[0].kid;
    }

    async function expectInvalid(token: string): Promise<void> {
      const res = await registry.request('GET', '/v2/alice/secret/manifests/v1', { headers: bearer(token) });
      expect(res.status).to.equal(401);
      expect(parseChallenge(res.headers['www-authenticate']).error).to.equal('invalid_token');
    }

    it('refuses an expired token signed with the real key', async function () {
      const pem = (await berth.storage.getContent('/auth/signing-key.pem'))!.toString();
      const now = Math.floor(Date.now() / 1000);
      const token = jwt.sign(claimsFor(secretAccess, { iat: now - 600, nbf: now - 600, exp: now - 300 }), pem, { algorithm: 'ES256', keyid: await kid(), noTimestamp: true });
      await expectInvalid(token);
    });

    it('refuses a token signed with another key under our kid', async function () {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await expectInvalid(jwt.sign(claimsFor(secretAccess), privateKey, { algorithm: 'ES256', keyid: await kid(), noTimestamp: true }));
    });

    it('refuses alg: none', async function () {
      const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      await expectInvalid(`${part({ alg: 'none', typ: 'JWT', kid: await kid() })}.${part(claimsFor(secretAccess))}.`);
    });

    it('refuses HS256 made with the public key as the secret', async function () {
      const jwk = (await registry.request('GET', '/.well-known/jwks.json')).json.keys[0];
      const publicPem = createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'pem', type: 'spki' }).toString();
      const forged = jwt.sign(claimsFor(secretAccess), publicPem, { algorithm: 'HS256', keyid: jwk.kid, noTimestamp: true });
      await expectInvalid(forged);
    });

    it('refuses a token for repository A on repository B, and a pull token for a push', async function () {
      const tokenA = await tokenFor(registry, ['repository:alice/app:pull'], bob);
      const onB = await registry.request('GET', '/v2/alice/secret/manifests/v1', { headers: bearer(tokenA) });
      expect(onB.status).to.equal(401);
      expect(parseChallenge(onB.headers['www-authenticate']).error).to.equal('insufficient_scope');
      const before = await berth.storage.list('/uploads');
      const push = await registry.request('POST', '/v2/alice/app/blobs/uploads/?digest=' + sha256('x'), { headers: { ...bearer(tokenA), 'Content-Type': 'application/octet-stream' }, body: 'x' });
      expect(push.status).to.equal(401);
      expect(parseChallenge(push.headers['www-authenticate']).error).to.equal('insufficient_scope');
      expect(await berth.storage.list('/uploads')).to.deep.equal(before);
      expect((await berth.storage.list('/blobs/sha256/' + sha256('x').slice(7, 9)))).to.deep.equal([]);
    });

    it('refuses the refresh token of a revoked access token', async function () {
      const out = await cli(berth, ['token', 'create', '--user', 'alice', '--scope', 'repository:alice/*:pull']);
      const pat = /token: (\S+)/.exec(out)![1]!;
      const id = /id: (\S+)/.exec(out)![1]!;
      const first = await tokenRequest(registry, ['repository:alice/secret:pull'], ['alice', pat], '&offline_token=true');
      expect(first.status).to.equal(200);
      await cli(berth, ['token', 'revoke', id]);
      const refreshed = await registry.request('POST', '/token', {
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token, service: 'berth', scope: 'repository:alice/secret:pull' }).toString(),
      });
      expect(refreshed.status).to.equal(401);
      expect((await tokenRequest(registry, ['repository:alice/secret:pull'], ['alice', pat])).status).to.equal(401);
    });

    it('grants no more for repeated or wildcard scope parameters than for one', async function () {
      const repeated = await tokenRequest(registry, ['repository:alice/app:pull', 'repository:alice/app:push', 'repository:alice/app:*', 'repository:alice/secret:pull repository:alice/secret:*'], bob);
      expect(decodeJwt(repeated.json.token).claims.access).to.deep.equal([{ type: 'repository', name: 'alice/app', actions: ['pull'] }]);
    });

    it('refuses names with .., %2e%2e or encoded slashes, in scopes and in paths', async function () {
      const scopes = ['repository:alice/../alice/secret:pull', 'repository:alice/%2e%2e/secret:pull', 'repository:alice%2Fsecret:pull', 'repository:../../etc:pull'];
      const res = await tokenRequest(registry, scopes, bob);
      expect(decodeJwt(res.json.token).claims.access).to.deep.equal([]);
      const token = await tokenFor(registry, ['repository:alice/app:pull'], bob);
      for (const path of ['/v2/alice/../alice/secret/manifests/v1', '/v2/alice/%2e%2e/alice/secret/manifests/v1', '/v2/alice%2Fsecret/manifests/v1', '/v2/alice/app/..%2Fsecret/manifests/v1']) {
        const r = await registry.request('GET', path, { headers: bearer(token) });
        expect(r.status, path).to.be.within(400, 404);
        expect(r.text, path).not.to.include('secret layer');
      }
    });

    it('ends a brute force on /token in 429 with Retry-After, even for the right password', async function () {
      await addUser(berth, 'victim', 'victim-password-1');
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await tokenRequest(registry, [], ['victim', `guess-${i}`])).status);
      expect(statuses.slice(0, 5)).to.deep.equal([401, 401, 401, 401, 401]);
      expect(statuses[5]).to.equal(429);
      const right = await tokenRequest(registry, [], ['victim', 'victim-password-1']);
      expect(right.status).to.equal(429);
      expect(Number(right.headers['retry-after'])).to.be.greaterThan(0);
      expect(errorCode(right)).to.equal('TOO_MANY_REQUESTS');
    });

    it('writes every decision to the audit log: who, what, which repository, allowed or not', async function () {
      await tokenRequest(registry, ['repository:alice/secret:pull'], bob);
      const lines = readFileSync(join(auditDir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).audit);
      expect(lines).to.deep.include({ who: 'bob', action: 'pull', repository: 'alice/secret', allowed: false, granted: [], address: '127.0.0.1' });
      expect(lines.some((l) => l.who === 'victim' && l.action === 'login' && l.allowed === false)).to.equal(true);
      expect(lines.some((l) => l.who === 'alice' && l.action === 'pull,push' && l.allowed === true)).to.equal(true);
    });
  });

  it('accepts Basic credentials sent straight to /v2 (curl -u), granting what a token would', async function () {
    const res = await registry.request('GET', '/v2/alice/secret/manifests/v1', { headers: { Authorization: basic(...alice) } });
    expect(res.status).to.equal(200);
    const other = await registry.request('GET', '/v2/alice/secret/manifests/v1', { headers: { Authorization: basic(...bob) } });
    expect(other.status).to.equal(401);
    expect(parseChallenge(other.headers['www-authenticate']).error).to.equal('insufficient_scope');
    const wrong = await registry.request('GET', '/v2/alice/secret/manifests/v1', { headers: { Authorization: basic('alice', 'wrong-password') } });
    expect(wrong.status).to.equal(401);
    expect(parseChallenge(wrong.headers['www-authenticate']).error).to.equal('invalid_token');
    const pushed = await new AuthorizedRegistry(berth.url, { Authorization: basic(...alice) }).pushImage('alice/basic', 'v1');
    expect((await registry.request('GET', `/v2/alice/basic/manifests/${pushed.digest}`, { headers: { Authorization: basic(...bob) } })).status).to.equal(200);
  });
});

describe('auth: failed logins counted per client address behind a trusted proxy', function () {
  for (const trustProxy of [true, false]) {
    describe(`BERTH_TRUST_PROXY=${trustProxy}`, function () {
      let berth: TestBerth;
      let registry: Registry;

      before(async function () {
        berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_TRUST_PROXY: String(trustProxy), BERTH_LOGIN_FAILURES_PER_ADDRESS: '2' } });
        registry = new Registry(berth.url);
      });

      after(() => berth?.destroy());

      it(trustProxy ? 'counts each X-Forwarded-For address apart' : 'ignores X-Forwarded-For, which any client can send', async function () {
        const attempt = (address: string, user: string) =>
          registry.request('GET', '/token?service=berth', { headers: { Authorization: basic(user, 'wrong-password'), 'X-Forwarded-For': address } });
        expect((await attempt('192.0.2.1', 'u1')).status).to.equal(401);
        expect((await attempt('192.0.2.1', 'u2')).status).to.equal(401);
        expect((await attempt('192.0.2.1', 'u3')).status).to.equal(429);
        // Another address: its own count behind a trusted proxy; the same (the socket's) otherwise.
        expect((await attempt('192.0.2.2', 'u4')).status).to.equal(trustProxy ? 401 : 429);
      });
    });
  }
});
