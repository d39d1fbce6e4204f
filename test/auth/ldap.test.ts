// Sign-in through a company directory, against a real OpenLDAP (slapd) the suite starts: passwords checked
// by binding as the user (web, /token, Basic on /v2) over StartTLS and LDAPS with the certificate verified,
// directory groups as organisation roles, users removed or disabled in the directory losing every
// credential at the next refresh, local accounts beside it, and a directory that is down or silent.
import { expect } from 'chai';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../server/config.ts';
import { AuthorizedRegistry, addUser, auditOf, basic, cli, decodeJwt, tokenRequest } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { groupDn, SERVICE_DN, SERVICE_PASSWORD, startLdap, SUFFIX, userDn, type DirectoryUser, type TestLdap } from '../helpers/ldap.ts';
import { Registry, errorCode } from '../helpers/registry.ts';
import { cookiesOf, csrfIn, FORM, signIn } from '../helpers/web.ts';
import { waitFor } from '../helpers/wait.ts';

const person = (uid: string, cn: string): DirectoryUser => ({ uid, cn, mail: `${uid}@example.org`, password: `${uid}-directory-password` });
const dave = person('dave', 'Dave Doe'); // dev → acme:write
const erin = person('erin', 'Erin Eve'); // readers → acme:read
const hank = person('hank', 'Hank Hill'); // dev, then taken out of it
const frank = person('frank', 'Frank Fox'); // deleted from the directory
const gina = person('gina', 'Gina Gold'); // disabled in the directory (noticed by a refresh token)
const kate = person('kate', 'Kate Kern'); // disabled in the directory (noticed by a web session)
const ivan = person('ivan', 'Ivan Ink'); // wrong passwords
const olivia = person('olivia', 'Olivia Oak'); // also a local account, which wins
const creds = (u: DirectoryUser): [string, string] => [u.uid, u.password];

// A user the filter does not find has no access: disabling is an attribute the filter excludes, as
// Active Directory's userAccountControl test does.
const FILTER = '(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))';
const REFRESH_SECONDS = 1;

/** The BERTH_LDAP_* settings for this directory, at `url`, trusting `ca`. */
function ldapEnv(ldap: TestLdap, passwordFile: string, url = ldap.url, ca = ldap.caFile, startTls = url.startsWith('ldap:')): Record<string, string> {
  return {
    BERTH_MODE: 'private',
    BERTH_LDAP_URL: url,
    BERTH_LDAP_START_TLS: String(startTls),
    BERTH_LDAP_CA_FILE: ca,
    BERTH_LDAP_BIND_DN: SERVICE_DN,
    BERTH_LDAP_BIND_PASSWORD_FILE: passwordFile,
    BERTH_LDAP_BASE_DN: `ou=people,${SUFFIX}`,
    BERTH_LDAP_GROUP_BASE_DN: `ou=groups,${SUFFIX}`,
    BERTH_LDAP_USER_FILTER: FILTER,
    // Spelled as a directory might answer it (upper case, spaces): compared normalised.
    BERTH_LDAP_GROUP_ROLES: `CN=dev, OU=groups,${SUFFIX}=>acme:write; ${groupDn('readers')}=>acme:read`,
    BERTH_LDAP_REFRESH_SECONDS: String(REFRESH_SECONDS),
    BERTH_LDAP_TIMEOUT_MS: '1500',
    BERTH_LOGIN_FAILURES_PER_ACCOUNT: '1000',
    BERTH_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: '3',
    BERTH_LOGIN_FAILURES_PER_ADDRESS: '1000',
  };
}

const refreshGrant = (registry: Registry, refreshToken: string, scope: string) =>
  registry.request('POST', '/token', {
    headers: { 'Content-Type': FORM },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, service: 'berth', scope }).toString(),
  });

/** The actions a token issued for these credentials (or this refresh token) carries on `name`. */
function actionsIn(token: string, name: string): string[] {
  const access = decodeJwt(token).claims.access as Array<{ name: string; actions: string[] }>;
  return access.find((a) => a.name === name)?.actions ?? [];
}

describe('auth: LDAP directory (a real slapd)', function () {
  this.timeout(90_000);
  let ldap: TestLdap;
  let berth: TestBerth;
  let registry: Registry;
  let secrets: string;
  let passwordFile: string;
  const extra: TestBerth[] = [];

  /** Another Berth on the same directory with other settings (TLS variants, a silent directory). */
  async function anotherBerth(env: Record<string, string>): Promise<{ berth: TestBerth; registry: Registry }> {
    const other = await startBerth({ env: { ...ldapEnv(ldap, passwordFile), ...env } });
    extra.push(other);
    return { berth: other, registry: new Registry(other.url) };
  }

  before(async function () {
    ldap = await startLdap([dave, erin, hank, frank, gina, kate, ivan, olivia], { dev: ['dave', 'hank'], readers: ['erin'] });
    secrets = mkdtempSync(join(tmpdir(), 'berth-ldap-secret-'));
    passwordFile = join(secrets, 'bind-password');
    writeFileSync(passwordFile, `${SERVICE_PASSWORD}\n`, { mode: 0o600 });
    berth = await startBerth({ env: ldapEnv(ldap, passwordFile) });
    registry = new Registry(berth.url);
    await addUser(berth, 'root-admin', 'admin-password-1', true);
    await addUser(berth, 'olivia', 'olivia-local-password');
  });

  after(async () => {
    for (const other of extra) await other.destroy();
    await berth?.destroy();
    await ldap?.destroy();
    if (secrets) rmSync(secrets, { recursive: true, force: true });
  });

  it('signs a directory user in with their directory password: web, /token and Basic on /v2 (StartTLS)', async function () {
    const cookie = await signIn(registry, ...creds(dave));
    const mine = await registry.request('GET', '/mine', { headers: { Cookie: cookie } });
    expect(mine.status).to.equal(200);
    expect(mine.text).to.include('dave');

    const token = await tokenRequest(registry, ['repository:acme/app:pull,push'], creds(dave));
    expect(token.status, token.text).to.equal(200);
    expect(decodeJwt(token.json.token).claims.sub).to.equal('dave');
    expect(actionsIn(token.json.token, 'acme/app')).to.have.members(['pull', 'push']);

    // Basic straight on /v2: the push goes through with the directory's password and the group's role.
    const asDave = new AuthorizedRegistry(berth.url, { Authorization: basic(...creds(dave)) });
    await asDave.pushImage('acme/app', 'v1');
    expect((await asDave.request('GET', '/v2/acme/app/manifests/v1')).status).to.equal(200);

    // The local record keeps what the directory said (name, e-mail), and no password of its own.
    const record = JSON.parse((await berth.storage.getContent('/auth/users/dave.json'))!.toString());
    expect(record.directory).to.include({ dn: userDn('dave'), displayName: 'Dave Doe', email: 'dave@example.org' });
    expect(record.passwordHash).to.equal('');
    // The service account's password is in no log line.
    expect(berth.logs.join('\n')).not.to.include(SERVICE_PASSWORD);
  });

  it('audits a directory user\'s decisions; their account pages and the log show no directory password nor their token', async function () {
    const cookie = await signIn(registry, ...creds(dave));
    const tokensPage = await registry.request('GET', '/account/tokens', { headers: { Cookie: cookie } });
    expect(tokensPage.status).to.equal(200);
    const made = await registry.request('POST', '/account/tokens', {
      headers: { Cookie: cookie, 'Content-Type': FORM },
      body: new URLSearchParams({ _csrf: csrfIn(tokensPage.text), description: 'laptop', scopes: 'repository:acme/*:pull', expiresIn: '30d' }).toString(),
    });
    expect(made.status, made.text).to.equal(201);
    const secret = /<code id="secret">([^<]+)<\/code>/.exec(made.text)![1]!;
    // A token a directory user made logs in (docker login) while the directory still has them.
    const token = await tokenRequest(registry, ['repository:acme/app:pull'], [dave.uid, secret]);
    expect(token.status, token.text).to.equal(200);
    expect(actionsIn(token.json.token, 'acme/app')).to.deep.equal(['pull']);

    for (const path of ['/account', '/account/tokens', '/account/namespaces/dave']) {
      const shown = await registry.request('GET', path, { headers: { Cookie: cookie } });
      expect(shown.status, path).to.equal(200);
      for (const hidden of [SERVICE_PASSWORD, dave.password, secret]) expect(shown.text, path).not.to.include(hidden);
    }
    await waitFor(() => auditOf(berth).some((a) => a.who === 'dave' && /^token create \S+ for dave$/.test(a.action) && a.allowed) || undefined, 'the token\'s audit line');
    const daves = auditOf(berth).filter((a) => a.who === 'dave');
    expect(daves.some((a) => a.action === 'web-signin' && a.allowed), 'web sign-in').to.equal(true);
    expect(daves.some((a) => a.action === 'login' && a.allowed), 'login with the token').to.equal(true);
    expect(daves.some((a) => a.action === 'directory role' && a.reason === 'acme:write'), 'the role the groups map to').to.equal(true);
    const log = berth.logs.join('\n');
    for (const hidden of [SERVICE_PASSWORD, dave.password, secret.split('.').pop()!]) expect(log).not.to.include(hidden);
  });

  it('refuses a wrong or empty password, audits it and counts it in the login limits', async function () {
    for (const password of ['not-ivans-password', '']) {
      const res = await tokenRequest(registry, [], ['ivan', password]);
      expect(res.status, `password ${JSON.stringify(password)}`).to.equal(401);
    }
    const web = await registry.request('GET', '/signin');
    const posted = await registry.request('POST', '/signin', {
      headers: { Cookie: cookiesOf(web), 'Content-Type': FORM },
      body: new URLSearchParams({ username: 'ivan', password: 'still-wrong', _csrf: csrfIn(web.text) }).toString(),
    });
    expect(posted.status).to.equal(401);
    // Three failures from this address for ivan: even the right password now waits.
    const limited = await tokenRequest(registry, [], creds(ivan));
    expect(limited.status).to.equal(429);
    expect(limited.headers['retry-after']).to.match(/^\d+$/);
    await waitFor(() => auditOf(berth).some((a) => a.who === 'ivan' && a.action === 'directory sign-in' && a.reason === 'wrong password') || undefined, 'ivan\'s wrong password audited');
  });

  it('maps directory groups to organisation roles: write may push, read may only pull', async function () {
    const asErin = new AuthorizedRegistry(berth.url, { Authorization: basic(...creds(erin)) });
    expect((await asErin.request('GET', '/v2/acme/app/manifests/v1')).status, 'pull with read').to.equal(200);
    const push = await asErin.request('POST', '/v2/acme/app/blobs/uploads/');
    expect(push.status, 'push with read').to.equal(401);
    expect(errorCode(push)).to.equal('UNAUTHORIZED');
    const token = await tokenRequest(registry, ['repository:acme/app:pull,push'], creds(erin));
    expect(actionsIn(token.json.token, 'acme/app')).to.deep.equal(['pull']);
    expect(await cli(berth, ['org', 'show', 'acme'])).to.match(/^dave write$/m).and.match(/^erin read$/m);
  });

  it('takes a role away at the next refresh when the directory takes the user out of the group', async function () {
    const asHank = new AuthorizedRegistry(berth.url, { Authorization: basic(...creds(hank)) });
    await asHank.pushImage('acme/app', 'hank');
    const offline = await tokenRequest(registry, [], creds(hank), '&offline_token=true');
    expect(offline.status).to.equal(200);

    ldap.removeFromGroup('dev', 'hank');
    // Basic credentials on /v2: refused to push once the last check is older than the refresh interval.
    await waitFor(async () => (await asHank.request('POST', '/v2/acme/app/blobs/uploads/')).status === 401, 'hank to lose push', 15_000);
    // The refresh token still stands (hank is still in the directory), without the role's push.
    const refreshed = await refreshGrant(registry, offline.json.refresh_token, 'repository:acme/app:pull,push');
    expect(refreshed.status).to.equal(200);
    expect(actionsIn(refreshed.json.token, 'acme/app')).to.deep.equal([]);
    expect(await cli(berth, ['org', 'show', 'acme'])).not.to.match(/^hank /m);
    await waitFor(() => auditOf(berth).some((a) => a.who === 'hank' && a.action === 'directory role' && a.reason === 'acme:none') || undefined, 'hank\'s role audited as acme:none');
  });

  it('removes a user deleted in the directory, with their refresh tokens and access tokens', async function () {
    const offline = await tokenRequest(registry, [], creds(frank), '&offline_token=true');
    expect(offline.status).to.equal(200);
    const pat = /token: (\S+)/.exec(await cli(berth, ['token', 'create', '--user', 'frank', '--scope', 'repository:frank/*:pull,push']))![1]!;
    expect((await tokenRequest(registry, [], ['frank', pat])).status).to.equal(200);

    ldap.remove(userDn('frank'));
    // The access token alone brings the check once the last one is old.
    await waitFor(async () => (await tokenRequest(registry, [], ['frank', pat])).status === 401, 'the access token to stop', 15_000);
    expect((await refreshGrant(registry, offline.json.refresh_token, '')).status, 'the refresh token').to.equal(401);
    expect((await tokenRequest(registry, [], creds(frank))).status, 'the password').to.equal(401);
    expect(await berth.storage.getContent('/auth/users/frank.json')).to.equal(undefined);
    await waitFor(() => auditOf(berth).some((a) => a.who === 'frank' && a.action === 'directory removal') || undefined, 'frank\'s removal audited');
  });

  it('ends the refresh tokens and web sessions of users disabled in the directory', async function () {
    const offline = await tokenRequest(registry, [], creds(gina), '&offline_token=true');
    expect(offline.status).to.equal(200);
    const cookie = await signIn(registry, ...creds(kate));
    expect((await registry.request('GET', '/mine', { headers: { Cookie: cookie } })).status).to.equal(200);

    for (const uid of ['gina', 'kate']) ldap.modify(`dn: ${userDn(uid)}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n`);
    // Each credential alone brings the check once the last one is old.
    await waitFor(async () => (await refreshGrant(registry, offline.json.refresh_token, '')).status === 401, 'the refresh token to stop', 15_000);
    await waitFor(async () => (await registry.request('GET', '/mine', { headers: { Cookie: cookie } })).status === 302, 'the session to end', 15_000);
    for (const user of [gina, kate]) expect((await tokenRequest(registry, [], creds(user))).status, user.uid).to.equal(401);
  });

  it('keeps local accounts working beside it: an admin, a robot, and a local user the directory cannot take over', async function () {
    const admin = new AuthorizedRegistry(berth.url, { Authorization: basic('root-admin', 'admin-password-1') });
    await admin.pushImage('library/base', 'v1');
    const robot = /token: (\S+)/.exec(await cli(berth, ['token', 'create', '--robot', 'acme+ci', '--scope', 'repository:acme/*:pull,push']))![1]!;
    const asRobot = new AuthorizedRegistry(berth.url, { Authorization: basic('acme+ci', robot) });
    await asRobot.pushImage('acme/built', 'v1');
    // olivia is a local account and a directory user: the local password, never the directory's.
    expect((await tokenRequest(registry, [], ['olivia', 'olivia-local-password'])).status).to.equal(200);
    expect((await tokenRequest(registry, [], creds(olivia))).status).to.equal(401);
  });

  it('answers directory users 503 while the directory is down, and local accounts as usual', async function () {
    const asDave = new AuthorizedRegistry(berth.url, { Authorization: basic(...creds(dave)) });
    expect((await asDave.request('GET', '/v2/acme/app/manifests/v1')).status).to.equal(200);
    await ldap.stop();
    try {
      for (let i = 0; i < 4; i++) {
        const started = Date.now();
        const res = await tokenRequest(registry, [], creds(dave));
        expect(res.status, res.text).to.equal(503);
        expect(errorCode(res)).to.equal('UNAVAILABLE');
        expect(Date.now() - started).to.be.below(5000);
      }
      // Basic on /v2 whose check is due: 503, not a 500 nor a stale yes.
      await waitFor(async () => (await asDave.request('GET', '/v2/acme/app/manifests/v1')).status === 503, 'the due check to answer 503', 10_000);
      const web = await registry.request('GET', '/signin');
      const posted = await registry.request('POST', '/signin', {
        headers: { Cookie: cookiesOf(web), 'Content-Type': FORM },
        body: new URLSearchParams({ username: 'dave', password: dave.password, _csrf: csrfIn(web.text) }).toString(),
      });
      expect(posted.status).to.equal(503);
      expect(posted.text).to.include('does not answer');
      expect((await tokenRequest(registry, [], ['root-admin', 'admin-password-1'])).status, 'a local admin').to.equal(200);
      // Nobody was removed on the directory's silence.
      expect(await berth.storage.getContent('/auth/users/dave.json')).not.to.equal(undefined);
    } finally {
      await ldap.start();
    }
    // Four refusals while it was down were not counted as failed logins (the limit is 3).
    expect((await tokenRequest(registry, [], creds(dave))).status).to.equal(200);
  });

  it('bounds a silent directory by the timeout: 503, never a hang', async function () {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => sockets.add(socket.on('error', () => undefined)));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (silent.address() as { port: number }).port;
      const other = await anotherBerth({ BERTH_LDAP_URL: `ldap://127.0.0.1:${port}`, BERTH_LDAP_TIMEOUT_MS: '500' });
      await addUser(other.berth, 'root-admin', 'admin-password-1', true);
      const started = Date.now();
      const res = await tokenRequest(other.registry, [], creds(dave));
      expect(res.status).to.equal(503);
      expect(Date.now() - started).to.be.below(3000);
      expect((await tokenRequest(other.registry, [], ['root-admin', 'admin-password-1'])).status).to.equal(200);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  it('verifies the directory\'s certificate over LDAPS and StartTLS: its CA signs in, another CA is refused', async function () {
    const trusted = await anotherBerth({ BERTH_LDAP_URL: ldap.ldapsUrl, BERTH_LDAP_START_TLS: 'false' });
    expect((await tokenRequest(trusted.registry, [], creds(dave))).status).to.equal(200);
    for (const [url, startTls] of [[ldap.ldapsUrl, 'false'], [ldap.url, 'true']] as const) {
      const stranger = await anotherBerth({ BERTH_LDAP_URL: url, BERTH_LDAP_START_TLS: startTls, BERTH_LDAP_CA_FILE: ldap.wrongCaFile });
      const res = await tokenRequest(stranger.registry, [], creds(dave));
      expect(res.status, `${url} with another CA`).to.equal(503);
      // The audit line reaches us through the server's log, which may arrive after the answer.
      const reasons = () => auditOf(stranger.berth).map((a) => String(a.reason));
      await waitFor(() => reasons().some((r) => /certificate/i.test(r)) || undefined, 'an audit line naming the certificate');
    }
  });

  describe('settings', function () {
    const base = { BERTH_LDAP_URL: 'ldaps://ldap.example.org', BERTH_LDAP_BIND_DN: SERVICE_DN, BERTH_LDAP_BASE_DN: SUFFIX };

    it('reads the service account\'s password from a file and never echoes it in an error', function () {
      const config = loadConfig({ ...base, BERTH_LDAP_BIND_PASSWORD_FILE: passwordFile, BERTH_LDAP_GROUP_ROLES: `${groupDn('dev')}=>acme:write` });
      expect(config.ldap!.bindPassword()).to.equal(SERVICE_PASSWORD);
      expect(JSON.stringify(config)).not.to.include(SERVICE_PASSWORD);
      expect(config.ldap!.groupRoles).to.deep.equal([{ group: groupDn('dev'), organisation: 'acme', role: 'write' }]);
      const both = () => loadConfig({ ...base, BERTH_LDAP_BIND_PASSWORD: 'top-secret-value', BERTH_LDAP_BIND_PASSWORD_FILE: passwordFile });
      expect(both).to.throw(/BERTH_LDAP_BIND_PASSWORD: .*one of them\) \(got a value, not shown\)/);
      try {
        both();
      } catch (err) {
        expect((err as Error).message).not.to.include('top-secret-value');
      }
    });

    it('refuses settings that cannot work together', function () {
      expect(() => loadConfig({ BERTH_LDAP_BIND_DN: SERVICE_DN })).to.throw(/BERTH_LDAP_BIND_DN: has no effect unless BERTH_LDAP_URL/);
      expect(() => loadConfig({ ...base, BERTH_LDAP_BIND_PASSWORD: 'x', BERTH_LDAP_START_TLS: 'true' })).to.throw(/BERTH_LDAP_START_TLS: ldaps:\/\/ is TLS already/);
      expect(() => loadConfig({ ...base, BERTH_LDAP_BIND_PASSWORD: 'x', BERTH_LDAP_USER_FILTER: '(uid=alice)' })).to.throw(/BERTH_LDAP_USER_FILTER: expected a filter with \{username\}/);
      expect(() => loadConfig({ ...base, BERTH_LDAP_BIND_PASSWORD: 'x', BERTH_LDAP_GROUP_ROLES: 'cn=dev=>acme:owner' })).to.throw(/BERTH_LDAP_GROUP_ROLES/);
      expect(() => loadConfig({ ...base, BERTH_LDAP_BIND_PASSWORD: 'x', BERTH_LDAP_CA_FILE: join(secrets, 'missing.pem') })).to.throw(/BERTH_LDAP_CA_FILE: cannot read/);
    });
  });
});
