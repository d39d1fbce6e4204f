// Sign-in through an OpenID provider, against a real one (oidc-provider) the suite starts on a loopback
// port: the authorization code flow with PKCE driven over HTTP (redirects followed, the provider's login
// and consent forms posted), groups as organisation roles, personal access tokens made from the browser
// session and used as docker uses them (/token with Basic), a user removed at the provider losing them at
// the next refresh, a forged state and a replayed callback refused, and a provider that does not answer.
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../server/config.ts';
import { layout } from '../../storage/index.ts';
import { addUser, auditOf, bearer, decodeJwt, tokenFor, tokenRequest } from '../helpers/auth.ts';
import type { TestBerth } from '../helpers/berth.ts';
import { Browser, CLIENT_SECRET, signInThroughProvider, startBerthWithOidc, startOidcProvider, tokenFromSession, type ProviderUser, type TestOidc } from '../helpers/oidc.ts';
import { Registry } from '../helpers/registry.ts';
import { signIn } from '../helpers/web.ts';
import { waitFor } from '../helpers/wait.ts';

const REFRESH_SECONDS = 1;
const person = (username: string, groups: string[]): ProviderUser => ({ username, name: `${username} at the provider`, email: `${username}@example.org`, groups });

describe('auth: OpenID Connect sign-in (a real oidc-provider)', function () {
  this.timeout(60_000);
  let oidc: TestOidc;
  let berth: TestBerth;
  let registry: Registry;
  const users = new Map<string, ProviderUser>([
    ['sub-alice', person('Alice', ['dev'])], // dev → acme:write; the name given in upper case
    ['sub-bob', person('bob', ['readers'])], // readers → acme:read, then moved to dev
    ['sub-carol', person('carol', ['dev'])], // removed at the provider
    ['sub-olivia', person('olivia', [])], // the name of a local account, which wins
  ]);

  const record = async (name: string) => {
    const raw = await berth.storage.getContent(layout.user(name));
    return raw ? (JSON.parse(raw.toString()) as { directory?: { source?: string; dn: string; checkedAt: string; sealedRefreshToken?: string; groups?: string[] } }) : undefined;
  };
  const roleIn = async (org: string, user: string) => {
    const raw = await berth.storage.getContent(layout.organisation(org));
    return raw ? (JSON.parse(raw.toString()) as { members: Record<string, string> }).members[user] : undefined;
  };

  const signInAs = (sub: string) => signInThroughProvider(berth, oidc, sub);
  const patFor = (browser: Browser, user: string) => tokenFromSession(berth, browser, user);
  const pushToken = (user: string, secret: string) => tokenRequest(registry, ['repository:acme/app:pull,push'], [user, secret]);
  const actionsOf = (token: string) => (decodeJwt(token).claims.access as Array<{ actions: string[] }>)[0]?.actions ?? [];

  before(async function () {
    oidc = await startOidcProvider(users);
    berth = await startBerthWithOidc(oidc, {}, REFRESH_SECONDS);
    registry = new Registry(berth.url);
    await addUser(berth, 'root-admin', 'admin-password-1', true);
    await addUser(berth, 'olivia', 'olivia-local-password');
  });

  after(async () => {
    await berth?.destroy();
    await oidc?.stop().catch(() => undefined);
  });

  it('refuses an incomplete or insecure provider configuration at start-up', function () {
    const base = { BERTH_MODE: 'private', BERTH_PUBLIC_URL: 'https://registry.example.com' };
    expect(() => loadConfig({ ...base, BERTH_OIDC_ISSUER: 'https://idp.example.com' })).to.throw(ConfigError, /BERTH_OIDC_CLIENT_ID[\s\S]*BERTH_OIDC_CLIENT_SECRET/);
    expect(() => loadConfig({ ...base, BERTH_OIDC_ISSUER: 'http://idp.example.com', BERTH_OIDC_CLIENT_ID: 'c', BERTH_OIDC_CLIENT_SECRET: 's' })).to.throw(ConfigError, /BERTH_OIDC_ISSUER.*https/);
    expect(() => loadConfig({ ...base, BERTH_OIDC_ISSUER: 'https://idp.example.com', BERTH_OIDC_CLIENT_ID: 'c', BERTH_OIDC_CLIENT_SECRET: 's', BERTH_OIDC_SCOPES: 'profile email' })).to.throw(ConfigError, /BERTH_OIDC_SCOPES.*openid/);
    expect(() => loadConfig({ BERTH_OIDC_CLIENT_ID: 'c' })).to.throw(ConfigError, /BERTH_OIDC_CLIENT_ID.*no effect/);
    const config = loadConfig({ ...base, BERTH_OIDC_ISSUER: 'https://idp.example.com', BERTH_OIDC_CLIENT_ID: 'c', BERTH_OIDC_CLIENT_SECRET: 's3cret' });
    expect(config.oidc?.redirectUrl).to.equal('https://registry.example.com/signin/oidc/callback');
    expect(JSON.stringify(config)).to.not.include('s3cret');
  });

  it('signs a provider user in: an account made at the first sign-in, their groups as organisation roles', async function () {
    const signInPage = await registry.request('GET', '/signin');
    expect(signInPage.text).to.include('href="/signin/oidc"').and.to.include('Sign in with Test IdP');

    const alice = await signInAs('sub-alice');
    expect(alice.status).to.equal(200);
    expect(alice.path).to.equal('/mine');
    expect(alice.page).to.include('alice');
    const kept = await record('alice');
    expect(kept?.directory?.source).to.equal('oidc');
    expect(kept?.directory?.dn).to.equal('sub-alice');
    expect(kept?.directory?.sealedRefreshToken).to.match(/^v1\./);
    expect(await roleIn('acme', 'alice')).to.equal('write');

    await signInAs('sub-bob');
    expect(await roleIn('acme', 'bob')).to.equal('read');

    await waitFor(() => auditOf(berth).some((a) => a.who === 'alice' && a.action === 'oidc sign-in' && a.allowed === true), 'the sign-in audited');
    await waitFor(() => auditOf(berth).some((a) => a.who === 'alice' && a.action === 'oidc role' && a.reason === 'acme:write'), 'the role audited');
    // Neither the client secret nor anything of the provider's tokens reaches the log.
    expect(berth.logs.join('\n')).to.not.include(CLIENT_SECRET);
  });

  it('lets the signed-in user make a personal access token (session + CSRF) that /token accepts as docker login sends it', async function () {
    const { browser } = await signInAs('sub-alice');
    const noCsrf = await fetch(new URL('/api/v1/users/alice/tokens', berth.url), {
      method: 'POST',
      headers: { Cookie: browser.cookieHeader(new URL(berth.url).origin), 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(noCsrf.status).to.equal(403);
    // What the admin API shows of the user says where they come from, never the provider's token (sealed as it is).
    const admin = await tokenFor(registry, [], ['root-admin', 'admin-password-1']);
    const listed = await registry.request('GET', '/api/v1/admin/users', { headers: bearer(admin) });
    const view = (JSON.parse(listed.text) as { users: Array<{ name: string; directory?: Record<string, unknown> }> }).users.find((u) => u.name === 'alice');
    expect(view?.directory?.source).to.equal('oidc');
    expect(view?.directory).to.not.have.property('sealedRefreshToken');
    const secret = await patFor(browser, 'alice');
    const token = await pushToken('alice', secret);
    expect(token.status, token.text).to.equal(200);
    expect(actionsOf(JSON.parse(token.text).token)).to.have.members(['pull', 'push']);
    // A provider user has no password here: nothing but a token signs them in outside the browser.
    expect((await tokenRequest(registry, ['repository:acme/app:pull'], ['alice', ''])).status).to.equal(401);
    expect((await tokenRequest(registry, ['repository:acme/app:pull'], ['alice', 'any-password-at-all'])).status).to.equal(401);
  });

  it('refuses a forged state, a callback without the browser that began it, and a replayed callback', async function () {
    const browser = new Browser();
    const berthOrigin = new URL(berth.url).origin;
    const walked = await browser.walk(new URL('/signin/oidc', berth.url), 'sub-bob', (url) => url.pathname === '/signin/oidc/callback', oidc.issuer);
    const callback = walked.stoppedAt!;
    expect(callback.searchParams.get('code')).to.be.a('string');
    const pending = browser.cookie(berthOrigin, 'berth_oidc')!;
    expect(pending).to.be.a('string');

    const forged = new URL(callback);
    forged.searchParams.set('state', 'forged-state');
    const refusedState = await browser.request('GET', forged);
    expect(refusedState.status).to.equal(400);
    expect(browser.cookie(berthOrigin, 'berth_session')).to.equal(undefined);
    expect(browser.cookie(berthOrigin, 'berth_oidc'), 'the pending sign-in is used up').to.equal(undefined);

    const stranger = new Browser();
    expect((await stranger.request('GET', callback)).status).to.equal(400);

    browser.setCookie(berthOrigin, 'berth_oidc', pending);
    const genuine = await browser.request('GET', callback);
    expect(genuine.status).to.equal(302);
    expect(genuine.headers.get('location')).to.equal('/mine');

    const replayer = new Browser();
    replayer.setCookie(berthOrigin, 'berth_oidc', pending);
    const replayed = await replayer.request('GET', callback);
    expect(replayed.status, 'the code was used once already').to.equal(400);
    expect(replayer.cookie(berthOrigin, 'berth_session')).to.equal(undefined);

    // The audit is written as the server's log is: looked for until it arrives.
    const refusals = () => auditOf(berth).filter((a) => a.action === 'oidc sign-in' && a.allowed === false).map((a) => String(a.reason));
    for (const reason of [/state/, /no sign-in was begun/, /answer was refused/]) await waitFor(() => refusals().some((r) => reason.test(r)), `a refusal for ${reason}`);
  });

  it('refuses an ID token whose claims were changed on the way: its signature is checked against the provider\'s JWKS', async function () {
    oidc.tamperIdToken = (claims) => ({ ...claims, preferred_username: 'root-admin' });
    try {
      const forged = await signInAs('sub-bob');
      expect(forged.status).to.equal(400);
      expect(forged.browser.cookie(new URL(berth.url).origin, 'berth_session')).to.equal(undefined);
    } finally {
      oidc.tamperIdToken = undefined;
    }
    expect((await record('root-admin'))?.directory).to.equal(undefined);
    await waitFor(() => auditOf(berth).some((a) => a.action === 'oidc sign-in' && a.allowed === false && /signature/i.test(String(a.reason))), 'the forged token audited').catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(auditOf(berth).filter((a) => a.allowed === false).slice(-2))}`);
    });
  });

  it('refuses an ID token the provider\'s key signed but not for this sign-in: another client, another issuer, expired, another nonce', async function () {
    const berthOrigin = new URL(berth.url).origin;
    const now = Math.floor(Date.now() / 1000);
    oidc.resignTamperedIdToken = true;
    try {
      // Signed again and unchanged, it is accepted: what refuses the others is the claim each one changes.
      oidc.tamperIdToken = (claims) => claims;
      const control = await signInAs('sub-bob');
      expect(control.browser.cookie(berthOrigin, 'berth_session'), 'the token signed again, unchanged').to.be.a('string');
      const changes: Array<[string, (claims: Record<string, unknown>) => Record<string, unknown>]> = [
        ['for another client', (claims) => ({ ...claims, aud: 'another-client' })],
        ['from another issuer', (claims) => ({ ...claims, iss: 'http://127.0.0.1:9/' })],
        ['expired an hour ago', (claims) => ({ ...claims, iat: now - 7200, exp: now - 3600 })],
        ['for another sign-in (nonce)', (claims) => ({ ...claims, nonce: 'a-nonce-berth-never-sent' })],
      ];
      for (const [what, change] of changes) {
        oidc.tamperIdToken = change;
        const refused = await signInAs('sub-bob');
        expect(refused.status, what).to.equal(400);
        expect(refused.browser.cookie(berthOrigin, 'berth_session'), what).to.equal(undefined);
      }
    } finally {
      oidc.tamperIdToken = undefined;
      oidc.resignTamperedIdToken = false;
    }
  });

  it('never hands a local account to the provider\'s user of the same name', async function () {
    const olivia = await signInAs('sub-olivia');
    expect(olivia.status).to.equal(400);
    expect((await record('olivia'))?.directory).to.equal(undefined);
    expect((await tokenRequest(registry, ['repository:olivia/x:pull'], ['olivia', 'olivia-local-password'])).status).to.equal(200);
  });

  it('asks the provider again for tokens in use: new groups apply, a removed user loses their tokens', async function () {
    const carol = await signInAs('sub-carol');
    const carolPat = await patFor(carol.browser, 'carol');
    const bob = await signInAs('sub-bob');
    const bobPat = await patFor(bob.browser, 'bob');
    expect((await pushToken('carol', carolPat)).status).to.equal(200);

    users.delete('sub-carol');
    users.get('sub-bob')!.groups = ['dev'];
    await waitFor(async () => (await pushToken('carol', carolPat)).status === 401, 'carol\'s token refused after the next refresh', 10_000);
    expect(await record('carol')).to.equal(undefined);
    await waitFor(() => auditOf(berth).some((a) => a.who === 'carol' && a.action === 'oidc removal' && a.allowed === false && a.reason === 'the provider no longer has the user'), 'the removal audited');

    // Bob's groups changed: at his next refresh he can push; two refreshes in a row, so the rotated refresh token was kept.
    const first = (await record('bob'))!.directory!.checkedAt;
    await waitFor(async () => {
      const token = await pushToken('bob', bobPat);
      return token.status === 200 && actionsOf(JSON.parse(token.text).token).includes('push');
    }, 'bob\'s new role', 10_000);
    expect(await roleIn('acme', 'bob')).to.equal('write');
    const second = await waitFor(async () => {
      const at = (await record('bob'))?.directory?.checkedAt;
      return at && at !== first ? at : undefined;
    }, 'bob refreshed once', 10_000);
    await waitFor(async () => {
      expect((await pushToken('bob', bobPat)).status).to.equal(200);
      const at = (await record('bob'))?.directory?.checkedAt;
      return at && at !== second;
    }, 'bob refreshed again', 10_000);
    expect(await record('bob')).to.not.equal(undefined);
  });

  it('answers 503 while the provider does not answer, removes nobody, and local accounts still sign in', async function () {
    const dora = await signInAs('sub-alice');
    const pat = await patFor(dora.browser, 'alice');
    const browser = new Browser();
    const walked = await browser.walk(new URL('/signin/oidc', berth.url), 'sub-bob', (url) => url.pathname === '/signin/oidc/callback', oidc.issuer);
    await oidc.stop();

    const callback = await browser.request('GET', walked.stoppedAt!);
    expect(callback.status).to.equal(503);
    expect(callback.text).to.include('Test IdP does not answer');
    // Alice's token, once her last check is old: the provider cannot be asked, so a 503, and she stays.
    await waitFor(async () => (await pushToken('alice', pat)).status === 503, 'a 503 for a token whose user cannot be checked', 10_000);
    expect(await record('alice')).to.not.equal(undefined);

    // A fresh server has not read the provider's metadata: the sign-in's first step is the 503.
    await berth.restart();
    const begin = await registry.request('GET', '/signin/oidc');
    expect(begin.status).to.equal(503);
    expect(await signIn(registry, 'root-admin', 'admin-password-1')).to.include('berth_session=');
    expect((await tokenRequest(registry, ['repository:acme/app:pull'], ['root-admin', 'admin-password-1'])).status).to.equal(200);
  });
});
