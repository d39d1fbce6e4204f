// Attacker: strangers at several loopback addresses try to sign up for namespaces that are already
// someone's (an admin's pushes, a user, an organisation, a reserved word), or look-alikes of them.
import { expect } from 'chai';
import { request } from 'node:http';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, basic, cli, tokenRequest } from '../helpers/auth.ts';
import { errorCode } from '../helpers/registry.ts';
import { SETTINGS } from '../../server/config.ts';

/** A request from a chosen loopback source address (127.0.0.2, 127.0.0.3 … are all this machine). */
function from(berth: TestBerth, address: string, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
    const req = request(new URL(path, berth.url), { method, headers: body === undefined ? headers : { ...headers, 'Content-Length': String(Buffer.byteLength(body)) }, localAddress: address, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('security: sign-up never claims a namespace that is already someone\'s', function () {
  let berth: TestBerth;
  let next = 2;
  /** Each attempt from a fresh address, so that the sign-up limit per address is never what refuses it. */
  const signUp = (username: string) =>
    from(berth, `127.0.0.${next++}`, 'POST', '/api/v1/users', { 'Content-Type': 'application/json' }, JSON.stringify({ username, password: 'stranger-password-1' }));

  before(async function () {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_RESERVED_NAMES: `${SETTINGS.reservedNames.default},corp,billing` } });
    await addUser(berth, 'root-admin', 'admin-password-1', true);
    await addUser(berth, 'alice', 'alice-password-1');
    await cli(berth, ['org', 'add', 'acme', '--owner', 'alice']);
    // An admin pushes into namespaces no account has.
    const admin = new AuthorizedRegistry(berth.url, { Authorization: basic('root-admin', 'admin-password-1') });
    await admin.pushImage('newco/app', 'v1');
    await admin.pushImage('big-corp/tools/cli', 'v1');
  });

  after(() => berth?.destroy());

  it('refuses a namespace an admin pushed to, and its look-alikes, with 409', async function () {
    for (const name of ['newco', 'new-co', 'new.co', 'new_co', 'n-e-w-c-o', 'big-corp', 'bigcorp', 'big.corp']) {
      const res = await signUp(name);
      expect(res.status, `${name}: ${res.text}`).to.equal(409);
      expect(JSON.parse(res.text).errors[0].message, name).to.match(/taken/);
    }
    // newco/app is still the admin's: nobody can log in as newco, so nobody but the admin can delete it.
    expect((await tokenRequest(new AuthorizedRegistry(berth.url, {}), [], ['newco', 'stranger-password-1'])).status).to.equal(401);
  });

  it('refuses look-alikes of a user and an organisation', async function () {
    for (const name of ['a-lice', 'al.ice', 'ali_ce', 'ac-me', 'a.c.m.e']) {
      const res = await signUp(name);
      expect(res.status, `${name}: ${res.text}`).to.equal(409);
    }
  });

  it('refuses the reserved words, the configured ones and look-alikes of them', async function () {
    for (const name of ['library', 'lib-rary', 'static', 'admin', 'api', 'v2', 'token', 'corp', 'billing', 'bill-ing']) {
      const res = await signUp(name);
      expect(res.status, `${name}: ${res.text}`).to.equal(400);
      expect(errorCode({ status: res.status, headers: {}, body: Buffer.from(res.text), text: res.text, json: JSON.parse(res.text) })).to.equal('DENIED');
      expect(JSON.parse(res.text).errors[0].message, name).to.include('reserved');
    }
  });

  it('refuses the same names through the web form', async function () {
    const address = `127.0.0.${next++}`;
    const form = await from(berth, address, 'GET', '/signup');
    const cookie = String(form.headers['set-cookie'] ?? '').split(/,(?=\s*\w+=)/).map((c) => c.split(';')[0]!.trim()).join('; ');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(form.text)![1]!;
    for (const username of ['new-co', 'static']) {
      const res = await from(berth, address, 'POST', '/signup', { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
        new URLSearchParams({ username, password: 'stranger-password-1', _csrf: csrf }).toString());
      expect(res.status, `${username}: ${res.text.slice(0, 200)}`).to.equal(400);
    }
  });

  it('refuses look-alikes of accounts made before names were claimed (the claims are made once, at the first sign-up)', async function () {
    await berth.stop();
    for (const path of await berth.storage.list('/auth/claims')) await berth.storage.delete(path);
    await berth.storage.delete('/auth/claims.complete');
    await berth.restart();
    for (const name of ['a-lice', 'ac.me']) {
      const res = await signUp(name);
      expect(res.status, `${name}: ${res.text}`).to.equal(409);
    }
    expect(await berth.storage.getContent('/auth/claims.complete')).to.not.equal(undefined);
  });

  it('still lets a stranger sign up for a name that is nobody\'s', async function () {
    const res = await signUp('dora');
    expect(res.status, res.text).to.equal(201);
  });
});
