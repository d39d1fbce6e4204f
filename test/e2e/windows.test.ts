// A Windows image through Berth with skopeo: a Docker schema 2 manifest whose base layer is foreign
// (non-distributable, referenced by `urls`, never pushed to a registry) plus one ordinary layer. skopeo
// pushes it from a `dir:` layout (from an `oci:` layout skopeo 1.9 cannot) and pulls it back to another
// `dir:` layout, fetching the foreign layer from its URL (a local server here, standing in for the
// Microsoft CDN), which must leave manifest and layers byte-identical.
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { requestsSince } from '../helpers/berth-requests.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import {
  hexOf,
  imageConfig,
  makeLayer,
  MediaTypes,
  pseudoRandomBytes,
  sha256,
  writeDirLayout,
  type Layer,
} from '../helpers/oci-layout.ts';

const OS_VERSION = '10.0.17763.5329';

describe('e2e: a Windows image with a foreign layer, pushed and pulled with skopeo', function () {
  this.timeout(120_000);

  let berth: TestBerth;
  let skopeo: Skopeo;
  let work: string;
  let cdn: Server;
  const cdnRequests: string[] = [];
  let foreign: Layer;
  let ordinary: Layer;
  let config: Buffer;
  let manifest: Buffer;
  let foreignUrl: string;
  const repo = 'e2e/windows/servercore-app';

  before(async function () {
    foreign = await makeLayer([
      { path: 'Files/', type: 'directory' },
      { path: 'Files/Windows/', type: 'directory' },
      { path: 'Files/Windows/System32/', type: 'directory' },
      { path: 'Files/Windows/System32/kernel32.dll', content: pseudoRandomBytes('windows base', 150_000) },
      { path: 'Hives/', type: 'directory' },
      { path: 'Hives/Software_Delta', content: pseudoRandomBytes('hive', 4_000) },
    ]);
    ordinary = await makeLayer([
      { path: 'Files/', type: 'directory' },
      { path: 'Files/app/', type: 'directory' },
      { path: 'Files/app/hello.txt', content: 'hello from a windows layer\r\n' },
      { path: 'Files/app/app.exe', content: pseudoRandomBytes('app.exe', 60_000) },
    ]);

    // The foreign layer's home: a plain HTTP server that counts who asks for it.
    cdn = createServer((req, res) => {
      cdnRequests.push(`${req.method} ${req.url}`);
      if (req.url === `/windows/servercore/${foreign.digest}`) {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': foreign.gz.length });
        res.end(req.method === 'HEAD' ? undefined : foreign.gz);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
    foreignUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}/windows/servercore/${foreign.digest}`;

    config = imageConfig({
      architecture: 'amd64',
      os: 'windows',
      osVersion: OS_VERSION,
      diffIds: [foreign.diffId, ordinary.diffId],
      cmd: ['cmd', '/S', '/C', 'type C:\\app\\hello.txt'],
      env: [],
    });
    manifest = Buffer.from(
      `${JSON.stringify(
        {
          schemaVersion: 2,
          mediaType: MediaTypes.dockerManifest,
          config: { mediaType: MediaTypes.dockerConfig, size: config.length, digest: sha256(config) },
          layers: [
            { mediaType: MediaTypes.dockerForeignLayer, size: foreign.gz.length, digest: foreign.digest, urls: [foreignUrl] },
            { mediaType: MediaTypes.dockerLayerGzip, size: ordinary.gz.length, digest: ordinary.digest },
          ],
        },
        null,
        3,
      )}\n`,
    ); // indented as Docker writes it: Berth must keep these exact bytes

    berth = await startBerth();
    skopeo = new Skopeo();
    work = tempDir('windows');
  });

  after(async function () {
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
    await new Promise<void>((resolve) => (cdn ? cdn.close(() => resolve()) : resolve()));
  });

  it('is pushed from a dir: layout without the foreign blob', async function () {
    const src = join(work, 'src');
    writeDirLayout(src, manifest, [config, ordinary.gz]); // the foreign layer's blob is not there at all
    expect(existsSync(join(src, hexOf(foreign.digest)))).to.equal(false);

    await skopeo.run(['copy', '--dest-tls-verify=false', `dir:${src}`, `docker://${berth.host}/${repo}:ltsc2019`]);

    expect(cdnRequests, 'the push fetched nothing from the foreign URL').to.deep.equal([]);
    const foreignHead = await fetch(`${berth.url}/v2/${repo}/blobs/${foreign.digest}`, { method: 'HEAD' });
    expect(foreignHead.status, 'the foreign blob was not pushed').to.equal(404);
    for (const [what, digest] of [
      ['config', sha256(config)],
      ['ordinary layer', ordinary.digest],
    ]) {
      const head = await fetch(`${berth.url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
      expect(head.status, what).to.equal(200);
    }

    const res = await fetch(`${berth.url}/v2/${repo}/manifests/ltsc2019`, { headers: { Accept: MediaTypes.dockerManifest } });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.equal(MediaTypes.dockerManifest);
    expect(res.headers.get('docker-content-digest')).to.equal(sha256(manifest));
    expect(Buffer.from(await res.arrayBuffer()).equals(manifest), 'manifest bytes as pushed').to.equal(true);
  });

  it('is described by skopeo inspect as windows with its os.version', async function () {
    const ref = `docker://${berth.host}/${repo}:ltsc2019`;
    const raw = await skopeo.run(['inspect', '--raw', '--tls-verify=false', ref]);
    expect(raw.stdout).to.equal(manifest.toString());
    const rawConfig = await skopeo.run(['inspect', '--config', '--raw', '--tls-verify=false', ref]);
    expect(rawConfig.stdout).to.equal(config.toString());
    const info = await skopeo.json<{ Digest: string; Os: string; Architecture: string; Layers: string[] }>([
      'inspect',
      '--tls-verify=false',
      ref,
    ]);
    expect(info.Digest).to.equal(sha256(manifest));
    expect(info.Os).to.equal('windows');
    expect(info.Architecture).to.equal('amd64');
    expect(info.Layers).to.deep.equal([foreign.digest, ordinary.digest]);
    const parsedConfig = JSON.parse(rawConfig.stdout) as Record<string, unknown>;
    expect(parsedConfig['os.version']).to.equal(OS_VERSION);
  });

  it('is pulled back byte-identical, the foreign layer from its URL and not from Berth', async function () {
    const mark = berth.logs.length;
    const out = join(work, 'pulled');
    await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/${repo}:ltsc2019`, `dir:${out}`]);

    expect(readFileSync(join(out, 'manifest.json')).equals(manifest), 'manifest.json bytes').to.equal(true);
    expect(readFileSync(join(out, hexOf(ordinary.digest))).equals(ordinary.gz), 'ordinary layer bytes').to.equal(true);
    expect(readFileSync(join(out, hexOf(sha256(config)))).equals(config), 'config bytes').to.equal(true);
    expect(readFileSync(join(out, hexOf(foreign.digest))).equals(foreign.gz), 'foreign layer bytes').to.equal(true);
    expect(cdnRequests).to.deep.equal([`GET /windows/servercore/${foreign.digest}`]);

    const askedBerth = requestsSince(berth, mark).filter((r) => r.path.endsWith(foreign.digest));
    expect(askedBerth, 'requests to Berth for the foreign blob').to.deep.equal([]);
  });
});
