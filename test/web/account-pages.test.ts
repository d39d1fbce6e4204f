// The account pages in real headless Chromium (one browser for the file), against a real Berth in private
// mode: a personal access token made on its page logs in (the /token flow) until it is revoked there; an
// organisation's admin adds, re-roles and removes a member; robots made and deleted; a namespace's
// policy set by its manager, its quota shown with the usage; a member who is not an admin sees no
// controls and a forged post without the CSRF token is refused; the admins' lifecycle runs. Then the same
// forms as plain HTTP posts (no JavaScript), and the audit log: every decision in it, no secret anywhere.
import { expect } from 'chai';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { addUser, auditOf, bearer, tokenFor, tokenRequest } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry } from '../helpers/auth.ts';
import { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { cookiesOf, csrfIn, FORM, signIn } from '../helpers/web.ts';

const chief = ['chief', 'chief-password-1'] as const;
const alice = ['alice', 'alice-password-1'] as const;
const bob = ['bob', 'bob-password-1'] as const;

describe('web: the account pages in a real browser', function () {
  this.timeout(120_000);
  let berth: TestBerth;
  let registry: Registry;
  let browser: Browser;
  /** The registry admin through the admin API: what the pages did, as the service stored it. */
  let admin: AuthorizedRegistry;
  const members = async () => (await admin.request('GET', '/api/v1/organisations/acme')).json.members;
  const policyOf = async (scope: string) => (await admin.request('GET', `/api/v1/policies/${scope}`)).json.policy;
  const contexts: BrowserContext[] = [];
  /** Secrets the pages showed: none may reach the log, nor a page shown after. */
  const secrets: string[] = [];

  const pages = new Map<string, Page>();
  /** The user's page (their own browser context), signed in through the sign-in form the first time. */
  async function signedIn(user: readonly [string, string]): Promise<Page> {
    const known = pages.get(user[0]);
    if (known) return known;
    const context = await browser.newContext({ baseURL: berth.url });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto('/signin');
    await page.fill('#username', user[0]);
    await page.fill('#password', user[1]);
    await page.click('main button[type=submit]');
    await page.waitForURL(/\/mine$/);
    pages.set(user[0], page);
    return page;
  }

  before(async () => {
    berth = await startBerth({ env: { BERTH_MODE: 'private' } });
    registry = new Registry(berth.url);
    await addUser(berth, ...chief, true);
    admin = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, [], [...chief])));
    const send = (path: string, body: unknown) => admin.request('POST', path, { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
    for (const [name, password] of [alice, bob]) expect((await send('/api/v1/admin/users', { name, password })).status).to.equal(201);
    expect((await send('/api/v1/organisations', { name: 'acme', owner: 'alice' })).status).to.equal(201);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  });

  after(async () => {
    for (const context of contexts) await context.close();
    await browser?.close();
    await berth?.destroy();
  });

  it('creates a personal access token with a scope and expiry, shows it once, and revoking it ends its logins', async () => {
    const page = await signedIn(alice);
    await page.click('header a[href="/account"]');
    await page.click('a[href="/account/tokens"]');
    await page.fill('#description', 'ci pulls');
    await page.fill('#scopes', 'repository:alice/*:pull');
    await page.selectOption('#expiresIn', '30d');
    await page.click('#new-token button[type=submit]');
    const secret = (await page.locator('#secret').textContent())!;
    expect(secret).to.match(/^berth_pat\./);
    secrets.push(secret);

    // The token logs in with the /token flow, granted only its scope.
    const token = await tokenFor(registry, ['repository:alice/app:pull,push'], [alice[0], secret]);
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    expect(claims.access).to.deep.equal([{ type: 'repository', name: 'alice/app', actions: ['pull'] }]);

    // Listed, with its scope and an expiry about 30 days off; the secret is on no later page.
    await page.goto('/account/tokens');
    const row = page.locator('#tokens tbody tr', { hasText: 'ci pulls' });
    expect(await row.locator('td').nth(2).textContent()).to.equal('repository:alice/*:pull');
    const expires = Date.parse((await row.locator('td').nth(4).locator('time').getAttribute('datetime'))!);
    expect(expires - Date.now()).to.be.within(29 * 86400_000, 30 * 86400_000 + 60_000);
    expect(await page.content()).not.to.include(secret.split('.').pop()!);

    await row.getByRole('button', { name: /Revoke token/ }).click();
    await page.locator('p[role=status]', { hasText: 'Token revoked' }).waitFor();
    expect(await page.locator('#tokens tbody tr', { hasText: 'ci pulls' }).locator('td').nth(5).textContent()).to.equal('revoked');
    expect((await tokenRequest(registry, ['repository:alice/app:pull'], [alice[0], secret])).status).to.equal(401);
  });

  it('lets an organisation admin add a member, change the role and remove them', async () => {
    const page = await signedIn(alice);
    await page.goto('/account');
    await page.click('a[href="/account/namespaces/acme"]');
    await page.fill('#member', 'bob');
    await page.selectOption('#member-role', 'write');
    await page.click('#add-member button[type=submit]');
    await page.locator('p[role=status]', { hasText: 'bob is now write' }).waitFor();
    expect(await members()).to.deep.equal({ alice: 'admin', bob: 'write' });

    await page.selectOption('#members tr[data-user="bob"] select', 'read');
    await page.click('#members tr[data-user="bob"] button:has-text("Change role")');
    await page.locator('p[role=status]', { hasText: 'bob is now read' }).waitFor();
    expect(await members()).to.deep.equal({ alice: 'admin', bob: 'read' });

    // A name that is nobody's is refused on the page, with the service's reason.
    await page.fill('#member', 'ghost');
    await page.click('#add-member button[type=submit]');
    expect(await page.locator('p[role=alert]').textContent()).to.include('no user ghost');

    await page.click('#members tr[data-user="bob"] button:has-text("Remove")');
    await page.locator('p[role=status]', { hasText: 'bob removed' }).waitFor();
    expect(await members()).to.deep.equal({ alice: 'admin' });
    await page.fill('#member', 'bob');
    await page.click('#add-member button[type=submit]');
    await page.locator('p[role=status]', { hasText: 'bob is now read' }).waitFor();
  });

  it('shows a member who is not an admin no controls, and refuses a forged post without the CSRF token', async () => {
    const page = await signedIn(bob);
    await page.goto('/account');
    expect(await page.locator('ul.namespaces a').allTextContents()).to.deep.equal(['bob']);
    expect(await page.locator('#runs').count(), 'lifecycle runs are the admins\'').to.equal(0);
    const org = await page.goto('/account/namespaces/acme');
    expect(org!.status()).to.equal(404);
    expect(await page.locator('main form').count()).to.equal(0);

    // A post from bob's own session without the token: 403, nothing changed.
    const forged = await page.request.post('/account/namespaces/acme/members', { form: { user: 'bob', role: 'admin' } });
    expect(forged.status()).to.equal(403);
    // With his token, he is still no admin of acme: the namespace does not exist for him.
    await page.goto('/account');
    const csrf = csrfIn(await page.content());
    const asked = await page.request.post('/account/namespaces/acme/members', { form: { user: 'bob', role: 'admin', _csrf: csrf } });
    expect(asked.status()).to.equal(404);
    expect(await members()).to.deep.equal({ alice: 'admin', bob: 'read' });
  });

  it('creates a robot, shows its secret once, and deleting it ends its logins', async () => {
    const page = await signedIn(alice);
    await page.goto('/account/namespaces/acme');
    await page.fill('#robot-name', 'ci');
    await page.fill('#scopes', 'repository:acme/*:pull,push');
    await page.click('#new-robot button[type=submit]');
    const secret = (await page.locator('#secret').textContent())!;
    secrets.push(secret);
    const token = await tokenFor(registry, ['repository:acme/app:pull,push'], ['acme+ci', secret]);
    await new AuthorizedRegistry(berth.url, bearer(token)).pushImage('acme/app', 'v1');

    await page.goto('/account/namespaces/acme');
    expect(await page.locator('#robots tr[data-robot="acme+ci"] td').nth(4).textContent()).to.equal('active');
    expect(await page.content()).not.to.include(secret);
    await page.click('#robots tr[data-robot="acme+ci"] button');
    await page.locator('p[role=status]', { hasText: 'Robot acme+ci deleted' }).waitFor();
    expect((await tokenRequest(registry, ['repository:acme/app:pull'], ['acme+ci', secret])).status).to.equal(401);
  });

  it('lets the namespace\'s manager set immutable tags and retention, and shows the quota an admin set with the usage', async () => {
    const page = await signedIn(alice);
    await page.goto('/account/namespaces/acme');
    expect(await page.locator('#quotaBytes').count(), 'the quota is the admins\'').to.equal(0);
    await page.fill('#immutableTags', 'v*\nrelease-?');
    await page.fill('#keepLast', '3');
    await page.fill('#keepTags', 'stable');
    await page.click('#policy button[type=submit]');
    await page.locator('p[role=status]', { hasText: 'Policy of acme saved' }).waitFor();
    expect(await policyOf('acme')).to.deep.equal({ immutableTags: ['v*', 'release-?'], retention: { keepLast: 3, keepTags: ['stable'] } });

    // A repository of the namespace has its own; a bad value is refused with the schema's words.
    await page.fill('#scope-pick', 'acme/app');
    await page.click('button:has-text("Show")');
    await page.fill('#keepDays', 'soon');
    await page.click('#policy button[type=submit]');
    expect(await page.locator('p[role=alert]').textContent()).to.include('retention.keepDays');

    // An admin sets the quota; the manager sees it with what acme holds (the image the robot pushed).
    const chiefs = await signedIn(chief);
    await chiefs.goto('/account/namespaces/acme');
    await chiefs.fill('#quotaBytes', '1000000');
    await chiefs.click('#policy button[type=submit]');
    await chiefs.locator('p[role=status]', { hasText: 'saved' }).waitFor();
    await page.goto('/account/namespaces/acme');
    const quota = (await page.locator('#quota').textContent())!;
    const used = Number(/\((\d+) of 1000000 bytes\)/.exec(quota)![1]);
    expect(used).to.be.greaterThan(0);
    // The manager saving again keeps the admins' quota as it was.
    await page.fill('#keepLast', '5');
    await page.click('#policy button[type=submit]');
    await page.locator('p[role=status]', { hasText: 'saved' }).waitFor();
    expect(await policyOf('acme')).to.include({ quotaBytes: 1000000 });
  });

  it('shows admins the last garbage collection run', async () => {
    const started = await admin.request('POST', '/api/v1/admin/gc');
    expect(started.status, started.text).to.equal(202);
    await waitFor(async () => ((await admin.request('GET', '/api/v1/admin/gc')).json.last ? true : undefined), 'the collection to finish', 20_000);
    const page = await signedIn(chief);
    await page.goto('/account');
    const row = page.locator('#runs tr', { hasText: 'Garbage collection' });
    expect(await row.locator('td').nth(3).textContent()).to.include('"blobsRemoved"');
    await page.click('a[href="/admin/replication"]');
    expect(await page.locator('h1').first().textContent()).to.match(/replication/i);
  });

  it('lists an admin every organisation a page of 100 at a time, with a link to the next', async () => {
    const send = (path: string, body: unknown) => admin.request('POST', path, { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
    const made = Array.from({ length: 100 }, (_, i) => `team${String(i).padStart(3, '0')}`);
    for (const name of made) expect((await send('/api/v1/organisations', { name })).status).to.equal(201);
    const page = await signedIn(chief);
    await page.goto('/account');
    const first = await page.locator('ul.namespaces a').allTextContents();
    // The admin's own namespace, then the first 100 organisations: acme and team000 to team098.
    expect(first).to.have.length(101);
    expect(first.slice(0, 3)).to.deep.equal(['chief', 'acme', 'team000']);
    await page.click('a[rel=next]');
    await page.waitForURL(/\/account\?last=team098$/);
    expect(await page.locator('ul.namespaces a').allTextContents()).to.deep.equal(['team099']);
    expect(await page.locator('a[rel=next]').count()).to.equal(0);
  });

  it('works without JavaScript: the same forms as plain HTTP posts', async () => {
    const cookie = await signIn(registry, ...bob);
    const headers = { Cookie: cookie, 'Content-Type': FORM };
    const tokens = await registry.request('GET', '/account/tokens', { headers: { Cookie: cookie } });
    expect(tokens.status).to.equal(200);
    const _csrf = csrfIn(tokens.text);
    const made = await registry.request('POST', '/account/tokens', { headers, body: new URLSearchParams({ _csrf, description: 'no js', scopes: '', expiresIn: 'never' }).toString() });
    expect(made.status, made.text).to.equal(201);
    expect(made.headers['cache-control']).to.equal('no-store');
    const secret = /<code id="secret">([^<]+)<\/code>/.exec(made.text)![1]!;
    secrets.push(secret);
    expect((await tokenRequest(registry, [], [bob[0], secret])).status).to.equal(200);
    const id = /<tr data-id="([^"]+)"><td>no js</.exec(made.text)![1]!;
    const revoked = await registry.request('POST', `/account/tokens/${id}/revoke`, { headers, body: new URLSearchParams({ _csrf }).toString() });
    expect(revoked.status).to.equal(200);
    expect((await tokenRequest(registry, [], [bob[0], secret])).status).to.equal(401);
    // Another user's token is not bob's to revoke: as if it did not exist.
    const other = await registry.request('POST', `/account/tokens/${id}x/revoke`, { headers, body: new URLSearchParams({ _csrf }).toString() });
    expect(other.status).to.equal(404);
    // Without a session, the pages ask to sign in first.
    const visitor = await registry.request('GET', '/account/tokens');
    expect(visitor.status).to.equal(302);
    expect(visitor.headers.location).to.equal('/signin');
    expect(cookiesOf(visitor)).not.to.include('berth_session');
  });

  it('audits every identity decision: sign-in, tokens, credentials, members, policies, admin actions; no secret reaches the log', async () => {
    // A few more decisions to find: a wrong password on the form, a sign-out, an admin action and a refused one.
    const form = await registry.request('GET', '/signin');
    const wrong = await registry.request('POST', '/signin', { headers: { Cookie: cookiesOf(form), 'Content-Type': FORM }, body: new URLSearchParams({ _csrf: csrfIn(form.text), username: 'alice', password: 'not-alices' }).toString() });
    expect(wrong.status).to.equal(401);
    const bobs = await signedIn(bob);
    await bobs.click('header button:has-text("Sign out")');
    await bobs.waitForURL(/\/signin$/); // private mode: the front page asks to sign in first
    expect((await admin.request('POST', '/api/v1/admin/gc')).status).to.be.oneOf([202, 409]);
    const asBob = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, [], [...bob])));
    expect((await asBob.request('POST', '/api/v1/admin/gc')).status).to.equal(403);

    const audited = (who: string, action: RegExp, allowed: boolean) =>
      waitFor(() => auditOf(berth).some((a) => a.who === who && action.test(a.action) && a.allowed === allowed) || undefined, `an audit line: ${who} ${action} ${allowed}`);
    await audited('alice', /^web-signin$/, true);
    await audited('alice', /^web-signin$/, false);
    await audited('alice', /^login$/, false); // the revoked token, at /token
    await audited('alice', /^pull,push$/, false); // a token issued with less than asked: its scope
    await audited('bob', /^web-signout$/, true);
    await audited('alice', /^token create \S+ for alice$/, true);
    await audited('alice', /^token revoke /, true);
    await audited('alice', /^org member acme bob$/, true);
    await audited('alice', /^org member acme ghost$/, false);
    await audited('bob', /^org member acme bob$/, false);
    await audited('bob', /^web-form$/, false);
    await audited('alice', /^robot create acme\+ci$/, true);
    await audited('alice', /^robot revoke acme\+ci$/, true);
    await audited('alice', /^policy set$/, true);
    await audited('chief', /^policy set$/, true);
    await audited('chief', /^POST \/api\/v1\/admin\/gc$/, true);
    await audited('bob', /^POST \/api\/v1\/admin\/gc$/, false);
    const log = berth.logs.join('\n');
    expect(secrets).to.have.lengthOf(3);
    for (const secret of secrets) expect(log).not.to.include(secret.split('.').pop()!);
    for (const password of [chief[1], alice[1], bob[1], 'not-alices']) expect(log).not.to.include(password);
  });
});
