// The catalog in real headless Chromium (Debian's chromium, driven by playwright-core), against a real
// Berth in public-index mode whose images were pushed with skopeo: search and the windows filter, the
// Windows Server 2019 verdict, copying a pull command, sign-up and sign-in, a private repository seen only
// by its owner, the CSRF refusal, logo upload and its refusals. A screenshot of each page is saved under
// .tmp/test-output/browser/.
import { expect } from 'chai';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { addUser, cli } from '../helpers/auth.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { imageConfig, makeLayer, MediaTypes, OciLayout, sha256, writeDirLayout } from '../helpers/oci-layout.ts';

const OUTPUT = resolve(import.meta.dirname, '..', '..', '.tmp', 'test-output', 'browser');
const alice = ['alice', 'alice-password-1'] as const;
const FOREIGN_BASE = 'https://mcr.microsoft.com/v2/windows/servercore/blobs';

describe('web: the catalog in a real browser', function () {
  this.timeout(120_000);
  let berth: TestBerth;
  let skopeo: Skopeo;
  let work: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let foreignDigest: string;

  const shot = (name: string) => page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
  const push = (dir: string, ref: string, target: string) =>
    skopeo.run(['copy', '--all', '--dest-tls-verify=false', '--dest-creds', alice.join(':'), `oci:${dir}:${ref}`, `docker://${berth.host}/${target}`]);

  before(async () => {
    mkdirSync(OUTPUT, { recursive: true });
    berth = await startBerth({ env: { BERTH_MODE: 'public-index' } });
    await addUser(berth, ...alice);
    skopeo = new Skopeo();
    work = tempDir('browser');

    const layout = new OciLayout(join(work, 'layout'));
    const linux = await layout.addImage({
      platform: { os: 'linux', architecture: 'amd64' },
      layers: [[{ path: 'hello.txt', content: 'hello linux' }]],
      labels: { 'org.opencontainers.image.source': 'https://github.com/alice/linux-app' },
    });
    const arm = await layout.addImage({ platform: { os: 'linux', architecture: 'arm64' }, layers: [[{ path: 'hello.txt', content: 'hello arm' }]] });
    const windowsLayer = await makeLayer([{ path: 'Files/', type: 'directory' }, { path: 'Files/app.txt', content: 'hello windows\r\n' }]);
    const windowsConfig = imageConfig({ os: 'windows', architecture: 'amd64', osVersion: '10.0.17763.5329', diffIds: [windowsLayer.diffId] });
    const windows = layout.addBlob(
      MediaTypes.ociManifest,
      Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.ociManifest,
        config: layout.addBlob(MediaTypes.ociConfig, windowsConfig),
        layers: [layout.addBlob(MediaTypes.ociLayerGzip, windowsLayer.gz)],
      })),
    );
    const index = layout.addIndex([
      { ...linux, platform: { os: 'linux', architecture: 'amd64' } } as typeof linux,
      { ...arm, platform: { os: 'linux', architecture: 'arm64' } } as typeof arm,
    ]);
    layout.writeIndexJson({ linux, windows, multi: index });
    await push(layout.dir, 'linux', 'alice/linux-app:1.0');
    await push(layout.dir, 'windows', 'alice/windows-app:ltsc2019');
    await push(layout.dir, 'multi', 'alice/multi:latest');
    await push(layout.dir, 'linux', 'alice/private-app:1');
    await cli(berth, ['repo', 'visibility', 'alice/private-app', 'private']);

    // A Windows image as Microsoft's bases make them: its base layer foreign (URLs on mcr.microsoft.com,
    // never pushed), pushed from a dir: layout as e2e/windows.test.ts does.
    const base = await makeLayer([{ path: 'Files/', type: 'directory' }, { path: 'Files/Windows/', type: 'directory' }]);
    const app = await makeLayer([{ path: 'Files/', type: 'directory' }, { path: 'Files/app.txt', content: 'hello servercore\r\n' }]);
    const servercoreConfig = imageConfig({ os: 'windows', architecture: 'amd64', osVersion: '10.0.17763.5329', diffIds: [base.diffId, app.diffId], cmd: ['cmd', '/S', '/C', 'type C:\\app.txt'], env: [] });
    const servercoreManifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.dockerManifest,
      config: { mediaType: MediaTypes.dockerConfig, size: servercoreConfig.length, digest: sha256(servercoreConfig) },
      layers: [
        { mediaType: MediaTypes.dockerForeignLayer, size: base.gz.length, digest: base.digest, urls: [`${FOREIGN_BASE}/${base.digest}`] },
        { mediaType: MediaTypes.dockerLayerGzip, size: app.gz.length, digest: app.digest },
      ],
    }));
    foreignDigest = base.digest;
    writeDirLayout(join(work, 'servercore'), servercoreManifest, [servercoreConfig, app.gz]);
    await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', alice.join(':'), `dir:${join(work, 'servercore')}`, `docker://${berth.host}/alice/servercore-app:ltsc2019`]);

    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
    context = await browser.newContext({ baseURL: berth.url });
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
  });

  const resultNames = () => page.locator('ul.results li strong').allTextContents();

  it('searches, and under the windows filter shows only images with a Windows platform', async () => {
    await page.goto('/');
    expect(await resultNames()).to.deep.equal(['alice/linux-app', 'alice/multi', 'alice/servercore-app', 'alice/windows-app']);
    await shot('search');
    await page.selectOption('#os', 'windows');
    await page.click('form.search button[type=submit]');
    await page.waitForURL(/os=windows/);
    expect(await resultNames()).to.deep.equal(['alice/servercore-app', 'alice/windows-app']);
    expect(await page.locator('ul.results .badge.os-windows').count()).to.equal(2);
    await shot('search-windows');
    await page.selectOption('#os', 'linux');
    await page.click('form.search button[type=submit]');
    await page.waitForURL(/os=linux/);
    expect(await resultNames()).to.deep.equal(['alice/linux-app', 'alice/multi']);
  });

  it('updates results as you type (live search)', async () => {
    await page.goto('/');
    await page.fill('#q', 'multi');
    await page.waitForFunction(() => document.querySelectorAll('ul.results li').length === 1);
    expect(await resultNames()).to.deep.equal(['alice/multi']);
  });

  it('shows a Windows image with its Windows Server 2019 name and the isolation note', async () => {
    await page.goto('/r/alice/windows-app');
    expect(await page.locator('td.platform').allTextContents()).to.deep.equal(['windows/amd64']);
    expect(await page.locator('table').textContent()).to.include('10.0.17763.5329 (Windows Server 2019)');
    const note = await page.locator('td.windows').textContent();
    expect(note).to.include('runs with process isolation on Windows Server 2019;');
    expect(note).to.include('with Hyper-V isolation on Windows Server 2022, Windows 11 22H2, Windows Server 2025');
    expect(await page.locator('meta[property="og:image"]').getAttribute('content')).to.equal(`${berth.url}/card/alice/windows-app`);
    await shot('repository-windows');
  });

  it('lists one row per platform of an index and copies its pull command', async () => {
    await page.goto('/r/alice/multi');
    expect(await page.locator('td.platform').allTextContents()).to.deep.equal(['linux/amd64', 'linux/arm64']);
    await page.getByRole('button', { name: 'Copy the docker command' }).click();
    await page.waitForFunction(() => (window as unknown as { lastCopied?: string }).lastCopied !== undefined);
    expect(await page.evaluate(() => (window as unknown as { lastCopied: string }).lastCopied)).to.equal(`docker pull ${berth.host}/alice/multi:latest`);
    expect(await page.getByRole('button', { name: 'Copy the docker command' }).textContent()).to.equal('Copied');
    await shot('repository-multi');
  });

  it('shows each pull command once, and loads pages (icon included) without a 404 or a console error', async () => {
    const missing: string[] = [];
    const errors: string[] = [];
    const onResponse = (res: { status(): number; url(): string }) => res.status() === 404 && missing.push(res.url());
    const onConsole = (msg: { type(): string; text(): string }) => msg.type() === 'error' && errors.push(msg.text());
    page.on('response', onResponse);
    page.on('console', onConsole);
    try {
      for (const path of ['/', '/r/alice/multi', '/r/alice/multi/tags/latest', '/signin']) {
        await page.goto(path);
        await page.waitForLoadState('load');
      }
      // The icon the page names, fetched as the browser would: it is there.
      const icon = await page.evaluate(async () => {
        const href = document.querySelector('link[rel=icon]')!.getAttribute('href')!;
        const res = await fetch(href);
        return { status: res.status, type: res.headers.get('content-type'), svg: (await res.text()).startsWith('<svg') };
      });
      expect(icon).to.deep.equal({ status: 200, type: 'image/svg+xml', svg: true });
      expect((await page.request.get('/favicon.ico')).status()).to.equal(200);
    } finally {
      page.off('response', onResponse);
      page.off('console', onConsole);
    }
    expect(missing).to.deep.equal([]);
    expect(errors).to.deep.equal([]);
    await page.goto('/r/alice/multi');
    expect(await page.locator('div.pull').allTextContents()).to.deep.equal([
      `docker pull ${berth.host}/alice/multi:latestCopy`,
      `podman pull ${berth.host}/alice/multi:latestCopy`,
    ]);
  });

  it('opens a Linux image from its tag: layers, history, config and the source as a link', async () => {
    await page.goto('/r/alice/linux-app');
    await page.getByRole('link', { name: '1.0', exact: true }).click();
    await page.waitForURL(/\/r\/alice\/linux-app\/tags\/1\.0$/);
    expect(await page.locator('h1').textContent()).to.equal('alice/linux-app:1.0');
    expect(await page.locator('#manifest').textContent()).to.include('linux/amd64');
    expect(await page.locator('#layers tbody tr').count()).to.equal(1);
    expect(await page.locator('#layers tbody td').nth(2).textContent()).to.equal(MediaTypes.ociLayerGzip);
    expect(await page.locator('#history li code').allTextContents()).to.deep.equal(['berth e2e layer 0']);
    expect(await page.locator('#config').textContent()).to.include('["sh"]');
    const source = page.locator('#labels a');
    expect(await source.getAttribute('href')).to.equal('https://github.com/alice/linux-app');
    expect(await page.locator('#docker-pull').textContent()).to.equal(`docker pull ${berth.host}/alice/linux-app:1.0`);
    await shot('image-linux');
  });

  it('shows a multi-platform index with its platforms, each a page of its own, without JavaScript', async () => {
    const plain = await browser.newContext({ baseURL: berth.url, javaScriptEnabled: false });
    try {
      const noScript = await plain.newPage();
      await noScript.goto('/r/alice/multi/tags/latest');
      expect(await noScript.locator('h1').textContent()).to.equal('alice/multi:latest');
      expect(await noScript.locator('#platforms td.platform').allTextContents()).to.deep.equal(['linux/amd64', 'linux/arm64']);
      await noScript.screenshot({ path: join(OUTPUT, 'image-index.png'), fullPage: true });
      await noScript.locator('#platforms tbody tr').nth(1).getByRole('link').click();
      await noScript.waitForURL(/\/r\/alice\/multi\/manifests\/sha256:[a-f0-9]{64}$/);
      const digest = noScript.url().split('/manifests/')[1]!;
      expect(await noScript.locator('#manifest').textContent()).to.include('linux/arm64');
      expect(await noScript.locator('#layers tbody tr').count()).to.equal(1);
      expect(await noScript.locator('#docker-pull').textContent()).to.equal(`docker pull ${berth.host}/alice/multi@${digest}`);
      await noScript.getByRole('link', { name: 'alice/multi', exact: true }).click();
      await noScript.waitForURL(/\/r\/alice\/multi$/);
    } finally {
      await plain.close();
    }
  });

  it('shows a Windows image: the foreign base layer with its URL, servercore and its build, and the host verdicts', async () => {
    await page.goto('/r/alice/servercore-app/tags/ltsc2019');
    const rows = page.locator('#layers tbody tr');
    expect(await rows.count()).to.equal(2);
    const foreign = rows.nth(0);
    expect(await foreign.getAttribute('class')).to.equal('foreign');
    expect(await foreign.locator('td').nth(2).textContent()).to.equal(MediaTypes.dockerForeignLayer);
    const from = await foreign.locator('td').nth(4).textContent();
    expect(from).to.include('foreign layer from windows/servercore, build 10.0.17763.5329 (Windows Server 2019)');
    expect(await foreign.locator('ul.urls a').getAttribute('href')).to.equal(`${FOREIGN_BASE}/${foreignDigest}`);
    expect(await rows.nth(1).locator('td').nth(4).textContent()).to.equal('this registry');
    expect(await page.locator('#manifest').textContent()).to.include('windows/amd64 · 10.0.17763.5329 (Windows Server 2019)');
    const verdict = await page.locator('div.windows').textContent();
    expect(verdict).to.include('runs with process isolation on Windows Server 2019;');
    expect(verdict).to.include('with Hyper-V isolation on Windows Server 2022, Windows 11 22H2, Windows Server 2025');
    await shot('image-windows');
  });

  it('hides a private repository from an anonymous visitor', async () => {
    await page.goto('/?q=private');
    expect(await resultNames()).to.deep.equal([]);
    const res = await page.goto('/r/alice/private-app');
    expect(res?.status()).to.equal(404);
    const image = await page.goto('/r/alice/private-app/tags/1');
    expect(image?.status()).to.equal(404);
    expect(await page.locator('main').textContent()).to.equal('Not foundNo repository by that name is visible to you.');
  });

  it('signs up a new account, and signs out', async () => {
    await page.goto('/signup');
    await page.getByLabel('User name').fill('dave');
    await page.getByLabel('Password').fill('dave-password-1');
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.waitForURL(/\/mine$/);
    expect(await page.locator('header').textContent()).to.include('Sign out dave');
    const cookie = (await context.cookies()).find((c) => c.name === 'berth_session')!;
    expect(cookie).to.include({ httpOnly: true, sameSite: 'Lax' });
    await shot('mine-new-account');
    await page.getByRole('button', { name: 'Sign out dave' }).click();
    await page.waitForURL(/\/$/);
    expect(await page.locator('header').textContent()).to.include('Sign in');
  });

  it("signs in and sees the owner's private repository", async () => {
    await page.goto('/signin');
    await shot('signin');
    await page.getByLabel('User name').fill(alice[0]);
    await page.getByLabel('Password').fill(alice[1]);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/mine$/);
    expect(await resultNames()).to.include('alice/private-app');
    await page.goto('/?q=private');
    expect(await resultNames()).to.deep.equal(['alice/private-app']);
    expect((await page.goto('/r/alice/private-app'))?.status()).to.equal(200);
    expect((await page.goto('/r/alice/private-app/tags/1'))?.status()).to.equal(200);
  });

  it('refuses a form post without the CSRF token', async () => {
    await page.goto('/settings/alice/multi');
    const status = await page.evaluate(async () => (await fetch('/settings/alice/multi', { method: 'POST', body: new URLSearchParams({ description: 'forged' }) })).status);
    expect(status).to.equal(403);
    await page.goto('/api/v1/repositories/alice/multi');
    expect(await page.textContent('body')).to.not.include('forged');
  });

  it('uploads a logo and shows it; refuses a non-image and a pixel bomb with a clear message', async () => {
    const logo = await sharp({ create: { width: 300, height: 300, channels: 4, background: '#cc3366' } }).png().toBuffer();
    await page.goto('/settings/alice/multi');
    await page.getByLabel('Description').fill('Two platforms, one tag');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForSelector('text=Saved.');
    await page.setInputFiles('#logo', { name: 'logo.png', mimeType: 'image/png', buffer: logo });
    await page.getByRole('button', { name: 'Upload logo' }).click();
    await page.waitForSelector('text=Logo saved.');
    await page.goto('/r/alice/multi');
    const img = page.getByAltText('logo of alice/multi');
    expect(await img.evaluate((e) => (e as HTMLImageElement).complete && (e as HTMLImageElement).naturalWidth)).to.equal(256);
    expect(await page.textContent('main')).to.include('Two platforms, one tag');
    await shot('repository-logo');

    await page.goto('/settings/alice/multi');
    await page.setInputFiles('#logo', { name: 'logo.png', mimeType: 'image/png', buffer: Buffer.from('not an image at all') });
    await page.getByRole('button', { name: 'Upload logo' }).click();
    expect(await page.getByRole('alert').textContent()).to.equal('Logo refused: the file is not an image: upload a PNG, JPEG or WebP logo');
    const bomb = await sharp({ create: { width: 5100, height: 5000, channels: 3, background: '#000000' } }).png({ compressionLevel: 9 }).toBuffer();
    await page.setInputFiles('#logo', { name: 'bomb.png', mimeType: 'image/png', buffer: bomb });
    await page.getByRole('button', { name: 'Upload logo' }).click();
    expect(await page.getByRole('alert').textContent()).to.match(/Logo refused: the image has more than 25 million pixels/);
    await shot('settings-refused');
  });

  it('labels every form field and gives every image alt text', async () => {
    for (const path of ['/', '/settings/alice/multi', '/r/alice/multi', '/r/alice/multi/tags/latest', '/r/alice/linux-app/tags/1.0']) {
      await page.goto(path);
      const unlabelled = await page.evaluate(() =>
        [...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter((e) => (e as HTMLInputElement).labels?.length === 0).map((e) => e.id),
      );
      expect(unlabelled, path).to.deep.equal([]);
      expect(await page.locator('img:not([alt])').count(), path).to.equal(0);
    }
    await page.goto('/');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.tagName)).to.be.oneOf(['A', 'INPUT', 'BUTTON']);
  });
});
