// The image pages over plain HTTP (what a browser without JavaScript gets), against a real Berth in
// public-index mode: an image's config, history and annotations with only http(s) links, referrers by
// artifact type, the repository's visibility exactly as its page, a config and a manifest above the
// manifest limit shown by their size only, and a repository whose own name ends in /tags/X.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, bearer, cli, tokenFor } from '../helpers/auth.ts';
import { Registry } from '../helpers/registry.ts';
import { OCI_MANIFEST } from '../helpers/storage-images.ts';

const alice: [string, string] = ['alice', 'alice-password-1'];
const LIMIT = 8192;

const CONFIG = {
  architecture: 'arm64',
  variant: 'v8',
  os: 'linux',
  created: '2026-01-02T03:04:05Z',
  config: {
    Entrypoint: ['/usr/bin/tini', '--'],
    Cmd: ['serve', '--port=8080'],
    Env: ['PATH=/usr/bin', 'GREETING=<b>hello</b>'],
    ExposedPorts: { '8080/tcp': {}, '9090/udp': {} },
    Volumes: { '/data': {} },
    User: '1000:1000',
    WorkingDir: '/srv/app',
    Labels: { 'org.opencontainers.image.documentation': 'javascript:alert(1)', maintainer: 'Alice <alice@example.com>' },
  },
  rootfs: { type: 'layers', diff_ids: [] },
  history: [
    { created: '2026-01-02T03:04:05Z', created_by: '/bin/sh -c #(nop) ADD file:abc in /' },
    { created: '2026-01-02T03:04:06Z', created_by: '/bin/sh -c #(nop) ENV GREETING=<b>hello</b>', empty_layer: true },
    { created: '2026-01-02T03:04:07Z', created_by: 'RUN make install', comment: 'buildkit.dockerfile.v0' },
  ],
};

const ANNOTATIONS = {
  'org.opencontainers.image.source': 'https://git.example.com/alice/app.git',
  'org.opencontainers.image.revision': '0123456789abcdef0123456789abcdef01234567',
  'org.opencontainers.image.documentation': 'https://docs.example.com/app?a=1&b=2',
  'org.opencontainers.image.url': 'javascript:alert(2)',
};

describe('web: image pages without JavaScript', function () {
  this.timeout(60_000);
  let berth: TestBerth;
  let registry: Registry;
  let owner: AuthorizedRegistry;
  let aliceToken: string;
  let image: { digest: string; config: string; layers: string[] };

  before(async () => {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_MAX_MANIFEST_BYTES: String(LIMIT) } });
    registry = new Registry(berth.url);
    await addUser(berth, ...alice);
    const repos = ['alice/app', 'alice/secret', 'alice/big', 'alice/odd/tags/v1', 'alice/odd'];
    owner = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, repos.map((r) => `repository:${r}:pull,push`), alice)));
    aliceToken = await tokenFor(registry, [], alice);
    image = await owner.pushImage('alice/app', '1.0', { config: CONFIG, layers: ['first layer', 'second layer, a little longer'], extra: { annotations: ANNOTATIONS } });
    const subject = { mediaType: OCI_MANIFEST, digest: image.digest, size: 0 };
    subject.size = (await owner.request('GET', `/v2/alice/app/manifests/${image.digest}`, { headers: { Accept: OCI_MANIFEST } })).body.length;
    for (const [tag, artifactType] of [['sig-1', 'application/vnd.dev.cosign.artifact.sig.v1+json'], ['sig-2', 'application/vnd.dev.cosign.artifact.sig.v1+json'], ['sbom', 'application/spdx+json']] as const) {
      await owner.pushImage('alice/app', tag, { layers: [`${tag} payload`], extra: { artifactType, subject } });
    }
    await owner.pushImage('alice/secret', 'v1', { config: CONFIG });
    await cli(berth, ['repo', 'visibility', 'alice/secret', 'private']);
  });
  after(() => berth?.destroy());

  it('shows an image: platform, layers in order with sizes and media types, history with empty layers marked, config', async () => {
    const res = await registry.request('GET', '/r/alice/app/tags/1.0');
    expect(res.status).to.equal(200);
    const text = res.text;
    expect(text).to.include('<h1>alice/app:1.0</h1>');
    expect(text).to.include(`<code>${image.digest}</code>`);
    expect(text).to.include('linux/arm64/v8');
    const layerRows = [...text.matchAll(/<tr class=""><td>(\d+)<\/td><td><code title="([^"]+)">/g)].map((m) => [m[1], m[2]]);
    expect(layerRows).to.deep.equal([['1', image.layers[0]], ['2', image.layers[1]]]);
    expect(text).to.include('<td>11 B</td>').and.include('<td>29 B</td>');
    expect(text).to.include('<code>application/vnd.oci.image.layer.v1.tar+gzip</code>');
    const steps = [...text.matchAll(/<li class="(empty-layer)?"><code>([^<]*)<\/code>/g)].map((m) => [m[1] ?? '', m[2]]);
    expect(steps).to.deep.equal([
      ['', '/bin/sh -c #(nop) ADD file:abc in /'],
      ['empty-layer', '/bin/sh -c #(nop) ENV GREETING=&lt;b&gt;hello&lt;/b&gt;'],
      ['', 'RUN make install'],
    ]);
    expect(text.match(/<span class="badge">no layer<\/span>/g)).to.have.length(1);
    for (const shown of ['[&quot;/usr/bin/tini&quot;,&quot;--&quot;]', '[&quot;serve&quot;,&quot;--port=8080&quot;]', '<code>GREETING=&lt;b&gt;hello&lt;/b&gt;</code>', '<code>8080/tcp</code>', '<code>9090/udp</code>', '<code>/data</code>', '<dd>1000:1000</dd>', '<dd>/srv/app</dd>', 'Alice &lt;alice@example.com&gt;']) {
      expect(text).to.include(shown);
    }
    expect(text).to.include(`docker pull ${berth.host}/alice/app:1.0`);
    expect(text).to.not.match(/docker docker/);
    expect(text).to.not.include('<b>hello</b>');
  });

  it('links source, documentation and the revision (under the source) only when they are http(s) URLs', async () => {
    const text = (await registry.request('GET', '/r/alice/app/tags/1.0')).text;
    expect(text).to.include('<a href="https://git.example.com/alice/app.git" rel="nofollow noopener noreferrer">https://git.example.com/alice/app.git</a>');
    expect(text).to.include('<a href="https://git.example.com/alice/app/commit/0123456789abcdef0123456789abcdef01234567" rel="nofollow noopener noreferrer">0123456789abcdef0123456789abcdef01234567</a>');
    expect(text).to.include('<a href="https://docs.example.com/app?a=1&amp;b=2" rel="nofollow noopener noreferrer">');
    expect(text).to.not.match(/href="javascript:/i);
    expect(text).to.include('<td>javascript:alert(2)</td>').and.include('<td>javascript:alert(1)</td>');
  });

  it('lists referrers by artifact type, each linked to its own page', async () => {
    const text = (await registry.request('GET', `/r/alice/app/manifests/${image.digest}`)).text;
    expect(text).to.include('<h1>alice/app@' + image.digest.slice(0, 19) + '…</h1>');
    expect(text).to.include(`docker pull ${berth.host}/alice/app@${image.digest}`);
    const groups = [...text.matchAll(/<h3><code>([^<]+)<\/code> \((\d+)\)<\/h3>/g)].map((m) => [m[1], m[2]]);
    expect(groups).to.deep.equal([['application/spdx+json', '1'], ['application/vnd.dev.cosign.artifact.sig.v1+json', '2']]);
    const sbom = /<h3><code>application\/spdx\+json<\/code> \(1\)<\/h3>\s*<ul><li><a href="([^"]+)">/.exec(text)![1]!;
    const artifact = await registry.request('GET', sbom);
    expect(artifact.status).to.equal(200);
    expect(artifact.text).to.include('<dt>Artifact type</dt><dd><code>application/spdx+json</code></dd>');
    expect(artifact.text).to.include(`Refers to <a href="/r/alice/app/manifests/${image.digest}">`);
  });

  it('answers a stranger about a private image exactly as about a missing one; its owner sees it', async () => {
    const hidden = await registry.request('GET', '/r/alice/secret/tags/v1');
    const missing = await registry.request('GET', '/r/alice/nothing-here/tags/v1');
    expect(hidden.status).to.equal(404);
    expect(hidden.text.replace(/berth_csrf=[^;"]+/g, '')).to.equal(missing.text.replace(/berth_csrf=[^;"]+/g, ''));
    expect(hidden.text).to.not.include('tini');
    const byDigest = await registry.request('GET', `/r/alice/secret/manifests/${image.digest}`);
    expect(byDigest.status).to.equal(404);
    expect(byDigest.text).to.not.include('tini');
    const mine = await registry.request('GET', '/r/alice/secret/tags/v1', { headers: bearer(aliceToken) });
    expect(mine.status).to.equal(200);
    expect(mine.text).to.include('/usr/bin/tini');
  });

  it('says which tag or digest a visible repository lacks, with a 404', async () => {
    for (const path of ['/r/alice/app/tags/2.0', '/r/alice/app/tags/-bad', '/r/alice/app/manifests/sha256:nothex', `/r/alice/app/manifests/sha256:${'0'.repeat(64)}`]) {
      const res = await registry.request('GET', path);
      expect(res.status, path).to.equal(404);
      expect(res.text, path).to.include('<a href="/r/alice/app">alice/app</a> has no manifest');
    }
  });

  it('shows a config larger than the manifest limit by its size only', async () => {
    const big = { ...CONFIG, config: { ...CONFIG.config, Labels: { padding: 'x'.repeat(LIMIT) } } };
    await owner.pushImage('alice/big', 'config', { config: big });
    const res = await registry.request('GET', '/r/alice/big/tags/config');
    expect(res.status).to.equal(200);
    expect(res.text).to.match(/The config \([0-9.]+ KiB\) is larger than the manifest limit \(8\.0 KiB\): not shown\./);
    expect(res.text).to.not.include('xxxxxxxx');
    expect(res.text).to.not.include('/usr/bin/tini');
  });

  it('leaves a repository named …/tags/X to its repository page', async () => {
    await owner.pushImage('alice/odd/tags/v1', 'latest');
    const res = await registry.request('GET', '/r/alice/odd/tags/v1');
    expect(res.status).to.equal(200);
    expect(res.text).to.include('<h1>alice/odd/tags/v1</h1>');
    expect(res.text).to.include('<a href="/r/alice/odd/tags/v1/tags/latest">latest</a>');
    expect((await registry.request('GET', '/r/alice/odd/tags/v1/tags/latest')).status).to.equal(200);
  });
});

describe('web: an image page for a manifest above a lowered manifest limit', function () {
  this.timeout(60_000);
  const dataDir = mkdtempSync(join(tmpdir(), 'berth-image-pages-'));
  let berth: TestBerth | undefined;
  after(async () => {
    await berth?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('shows the manifest by its digest, type and size only, not whole', async () => {
    berth = await startBerth({ dataDir });
    const annotations = { 'org.example.padding': 'p'.repeat(3000) };
    const pushed = await new Registry(berth.url).pushImage('big/manifest', 'v1', { extra: { annotations } });
    expect((await new Registry(berth.url).request('GET', '/r/big/manifest/tags/v1')).text).to.include('ppppppppp');
    await berth.destroy();
    berth = await startBerth({ dataDir, env: { BERTH_MAX_MANIFEST_BYTES: '2048' } });
    const res = await new Registry(berth.url).request('GET', '/r/big/manifest/tags/v1');
    expect(res.status).to.equal(200);
    expect(res.text).to.match(/This manifest \([0-9.]+ KiB\) is larger than the manifest limit \(2\.0 KiB\): not shown\./);
    expect(res.text).to.include(`<code>${pushed.digest}</code>`);
    expect(res.text).to.not.include('ppppppppp');
  });
});
