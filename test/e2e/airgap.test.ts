// Air-gapped transfer against real Berth processes and skopeo: berth export writes an OCI image layout
// (directory or tar) that skopeo reads, berth import takes it (and skopeo's own layouts) into storage or
// over HTTP (token auth included); digests stay equal end to end, referrers follow their subjects, and a
// tampered layout leaves nothing behind.
import { expect } from 'chai';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { addUser, bearer, tokenFor } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { berthCommand } from '../helpers/berth-command.ts';
import { removeDir, run, Skopeo, tempDir, type RunResult } from '../helpers/clients.ts';
import { hexOf, jsonBytes, MediaTypes, OciLayout, pseudoRandomBytes, sha256, type Descriptor } from '../helpers/oci-layout.ts';
import { Registry } from '../helpers/registry.ts';
import { berthArgs } from '../helpers/built.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const REF_NAME = 'org.opencontainers.image.ref.name';
const PASSWORD = 'correct horse battery staple';

/** The berth command on a data folder no server uses. */
function berthOn(dataDir: string, args: string[], input?: string): Promise<RunResult> {
  return run(process.execPath, berthArgs(args), {
    cwd: ROOT,
    env: { ...process.env, BERTH_DATA: dataDir, BERTH_LOG_LEVEL: 'silent' },
    input: input === undefined ? undefined : Buffer.from(input),
    timeoutMs: 60_000,
    allowFailure: true,
  });
}

async function manifestBytes(registry: Registry, name: string, reference: string, headers: Record<string, string> = {}): Promise<Buffer> {
  const res = await registry.request('GET', `/v2/${name}/manifests/${reference}`, {
    headers: { Accept: `${MediaTypes.ociIndex}, ${MediaTypes.ociManifest}`, ...headers },
  });
  expect(res.status, `${name}:${reference} ${res.text}`).to.equal(200);
  return res.body;
}

async function referrerDigests(registry: Registry, name: string, subject: string, headers: Record<string, string> = {}): Promise<string[]> {
  const res = await registry.request('GET', `/v2/${name}/referrers/${subject}`, { headers });
  expect(res.status, res.text).to.equal(200);
  return (res.json.manifests as Descriptor[]).map((d) => d.digest).sort();
}

describe('e2e: air-gapped transfer (berth export / berth import)', function () {
  this.timeout(180_000);

  let source: TestBerth;
  let second: TestBerth;
  let skopeo: Skopeo;
  let work: string;
  let index: Descriptor;
  let amd64: Descriptor;
  let sbom: string;
  let signature: string;
  let exported: string;
  const started: TestBerth[] = [];

  /** A Berth on a data folder an import wrote while no server ran. */
  async function serve(dataDir: string, env: Record<string, string> = {}): Promise<Registry> {
    const berth = await startBerth({ dataDir, env });
    started.push(berth);
    return new Registry(berth.url);
  }

  before(async function () {
    work = tempDir('airgap');
    [source, second] = await Promise.all([startBerth(), startBerth()]);
    skopeo = new Skopeo();

    // A two-platform index, pushed by skopeo; then an SBOM on the index and a signature on one platform.
    const layout = new OciLayout(join(work, 'source'));
    amd64 = await layout.addImage({ platform: { architecture: 'amd64', os: 'linux' }, layers: [[{ path: 'amd64', content: pseudoRandomBytes('amd64', 400_000) }]] });
    const arm64 = await layout.addImage({ platform: { architecture: 'arm64', os: 'linux' }, layers: [[{ path: 'arm64', content: pseudoRandomBytes('arm64', 300_000) }]] });
    index = layout.addIndex([
      { ...amd64, platform: { architecture: 'amd64', os: 'linux' } },
      { ...arm64, platform: { architecture: 'arm64', os: 'linux' } },
    ]);
    layout.writeIndexJson({ '1.0': index });
    await skopeo.run(['copy', '--all', '--dest-tls-verify=false', `oci:${layout.dir}:1.0`, `docker://${source.host}/e2e/app:1.0`]);

    const registry = new Registry(source.url);
    const artifact = async (subject: Descriptor, artifactType: string, content: string): Promise<string> => {
      const empty = await registry.pushBlob('e2e/app', '{}');
      const blob = await registry.pushBlob('e2e/app', content);
      const manifest = jsonBytes({
        schemaVersion: 2,
        mediaType: MediaTypes.ociManifest,
        artifactType,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty, size: 2 },
        layers: [{ mediaType: artifactType, digest: blob, size: Buffer.byteLength(content) }],
        subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      });
      const res = await registry.putManifest('e2e/app', sha256(manifest), manifest, MediaTypes.ociManifest);
      expect(res.status, res.text).to.equal(201);
      return sha256(manifest);
    };
    sbom = await artifact(index, 'application/spdx+json', '{"spdxVersion":"SPDX-2.3"}');
    signature = await artifact(amd64, 'application/vnd.dev.cosign.simplesigning.v1+json', '{"critical":{}}');

    exported = join(work, 'exported');
    const res = await berthCommand(source, ['export', 'e2e/app:1.0', '--to', exported]);
    expect(JSON.parse(res.stdout).images).to.deep.equal(['e2e/app:1.0']);
  });

  after(async function () {
    await Promise.all([source, second, ...started].map((b) => b?.destroy()));
    skopeo?.cleanup();
    if (work) removeDir(work);
  });

  it('writes an OCI image layout: the index by its name, every platform, and the referrers unnamed', function () {
    expect(JSON.parse(readFileSync(join(exported, 'oci-layout'), 'utf8'))).to.deep.equal({ imageLayoutVersion: '1.0.0' });
    const entries = JSON.parse(readFileSync(join(exported, 'index.json'), 'utf8')).manifests as Descriptor[];
    const named = entries.filter((d) => d.annotations?.[REF_NAME]);
    expect(named.map((d) => [d.annotations![REF_NAME], d.digest])).to.deep.equal([['e2e/app:1.0', index.digest]]);
    expect(entries.filter((d) => !d.annotations).map((d) => d.digest).sort()).to.deep.equal([sbom, signature].sort());
    // index, 2 manifests, 2 configs, 2 layers; 2 artifacts with the empty config and a blob each.
    expect(readdirSync(join(exported, 'blobs', 'sha256'))).to.have.length(7 + 2 + 1 + 2);
    for (const hex of readdirSync(join(exported, 'blobs', 'sha256'))) {
      expect(sha256(readFileSync(join(exported, 'blobs', 'sha256', hex)))).to.equal(`sha256:${hex}`);
    }
  });

  it('is read by skopeo (oci:DIR:NAME:TAG) into a second Berth, byte-exact', async function () {
    await skopeo.run(['copy', '--all', '--dest-tls-verify=false', `oci:${exported}:e2e/app:1.0`, `docker://${second.host}/copied/app:1.0`]);
    const from = new Registry(source.url);
    const to = new Registry(second.url);
    expect((await manifestBytes(to, 'copied/app', '1.0')).equals(await manifestBytes(from, 'e2e/app', '1.0'))).to.equal(true);
    expect(sha256(await manifestBytes(to, 'copied/app', amd64.digest))).to.equal(amd64.digest);
  });

  it('is imported into storage whole (a directory): indexes, platforms and referrers byte-exact', async function () {
    const data = mkdtempSync(join(tmpdir(), 'berth-airgap-'));
    const res = await berthOn(data, ['import', exported]);
    expect(res.code, res.stderr).to.equal(0);
    const report = JSON.parse(res.stdout);
    expect(report.images).to.deep.equal(['e2e/app:1.0']);
    expect(report.manifests).to.equal(5);
    const registry = await serve(data);
    const original = new Registry(source.url);
    expect((await manifestBytes(registry, 'e2e/app', '1.0')).equals(await manifestBytes(original, 'e2e/app', '1.0'))).to.equal(true);
    expect(await referrerDigests(registry, 'e2e/app', index.digest)).to.deep.equal([sbom]);
    expect(await referrerDigests(registry, 'e2e/app', amd64.digest)).to.deep.equal([signature]);
    const layer = (JSON.parse((await manifestBytes(registry, 'e2e/app', amd64.digest)).toString()) as { layers: Descriptor[] }).layers[0]!;
    const blob = await registry.request('GET', `/v2/e2e/app/blobs/${layer.digest}`);
    expect(sha256(blob.body)).to.equal(layer.digest);
  });

  it('round trips as a tar archive that skopeo reads (oci-archive:), into a namespace', async function () {
    const archive = join(work, 'app.tar');
    await berthCommand(source, ['export', 'e2e/app', '--to', archive]);
    const raw = await skopeo.run(['inspect', '--raw', `oci-archive:${archive}:e2e/app:1.0`]);
    expect(sha256(raw.stdout)).to.equal(index.digest);

    const data = mkdtempSync(join(tmpdir(), 'berth-airgap-'));
    const res = await berthOn(data, ['import', archive, '--to', 'mirror']);
    expect(res.code, res.stderr).to.equal(0);
    const registry = await serve(data);
    expect(sha256(await manifestBytes(registry, 'mirror/e2e/app', '1.0'))).to.equal(index.digest);
    expect(await referrerDigests(registry, 'mirror/e2e/app', amd64.digest)).to.deep.equal([signature]);
  });

  it('refuses a layout with a tampered blob, and nothing becomes visible', async function () {
    const tampered = join(work, 'tampered');
    cpSync(exported, tampered, { recursive: true });
    const config = (JSON.parse(readFileSync(join(tampered, 'blobs', 'sha256', hexOf(amd64.digest)), 'utf8')) as { layers: Descriptor[] }).layers[0]!;
    const path = join(tampered, 'blobs', 'sha256', hexOf(config.digest));
    const bytes = readFileSync(path);
    bytes[bytes.length - 5] ^= 0xff; // same size, other bytes
    writeFileSync(path, bytes);

    const data = mkdtempSync(join(tmpdir(), 'berth-airgap-'));
    const res = await berthOn(data, ['import', tampered]);
    expect(res.code).to.equal(2);
    expect(res.stderr).to.contain(config.digest).and.to.contain('expected');
    expect(existsSync(join(data, 'repositories')), 'no repository written').to.equal(false);
    expect(existsSync(join(data, 'blobs')), 'no blob written').to.equal(false);
  });

  it('refuses to write the storage of a running server without Redis, and points to --url', async function () {
    const res = await berthCommand(second, ['import', exported], { allowFailure: true });
    expect(res.code).to.equal(2);
    expect(res.stderr).to.contain('a server without Redis uses this storage').and.to.contain('--url');
    expect((await new Registry(second.url).request('GET', '/v2/e2e/app/tags/list')).status).to.equal(404);
  });

  it('imports a layout skopeo wrote over HTTP (--url); a second import sends no blob again', async function () {
    const written = join(work, 'by-skopeo');
    await skopeo.run(['copy', '--all', '--src-tls-verify=false', `docker://${source.host}/e2e/app:1.0`, `oci:${written}:v1`]);
    const first = await berthCommand(second, ['import', written, '--to', 'imported/app', '--url', second.url]);
    const report = JSON.parse(first.stdout);
    expect(report.images).to.deep.equal(['imported/app:v1']);
    // The second Berth holds these blobs already (in copied/app): linked by mounts, not sent again.
    expect(report.blobs).to.deep.equal({ present: 0, mounted: 4, uploaded: 0 });
    const inspected = await skopeo.run(['inspect', '--raw', '--tls-verify=false', `docker://${second.host}/imported/app:v1`]);
    expect(sha256(inspected.stdout)).to.equal(index.digest);
    expect(sha256(await manifestBytes(new Registry(second.url), 'imported/app', amd64.digest))).to.equal(amd64.digest);

    const again = JSON.parse((await berthCommand(second, ['import', written, '--to', 'imported/app', '--url', second.url])).stdout);
    expect(again.blobs).to.deep.equal({ present: 4, mounted: 0, uploaded: 0 });
  });

  it('imports over HTTP a layer past 64 MiB, sent in chunks from the layout\'s file, byte-exact', async function () {
    const layout = new OciLayout(join(work, 'big'));
    const image = await layout.addImage({ platform: { architecture: 'amd64', os: 'linux' }, layers: [[{ path: 'big', content: pseudoRandomBytes('big', 72 * 1024 * 1024) }]] });
    layout.writeIndexJson({ v1: image });
    const report = JSON.parse((await berthCommand(second, ['import', layout.dir, '--to', 'chunked/app', '--url', second.url])).stdout);
    expect(report.blobs).to.deep.equal({ present: 0, mounted: 0, uploaded: 2 });
    const registry = new Registry(second.url);
    const manifest = JSON.parse((await manifestBytes(registry, 'chunked/app', 'v1')).toString()) as { layers: Array<{ digest: string; size: number }> };
    const [layer] = manifest.layers;
    expect(layer!.size).to.be.above(64 * 1024 * 1024);
    expect(sha256((await registry.request('GET', `/v2/chunked/app/blobs/${layer!.digest}`)).body)).to.equal(layer!.digest);
  });

  it('imports over HTTP with credentials into a public-index Berth (token flow)', async function () {
    const index_ = await startBerth({ env: { BERTH_MODE: 'public-index' } });
    started.push(index_);
    await addUser(index_, 'alice', PASSWORD);
    const args = ['import', exported, '--url', index_.url, '--to', 'alice', '--username', 'alice', '--password-stdin'];

    const refused = await berthCommand(index_, args.slice(0, -3), { allowFailure: true });
    expect(refused.code, 'without credentials').to.equal(2);
    const wrong = await run(process.execPath, berthArgs(args), { cwd: ROOT, input: Buffer.from('wrong\n'), allowFailure: true });
    expect(wrong.code, 'wrong password').to.equal(2);
    expect(refused.stderr).to.contain('401');
    expect(wrong.stderr).to.contain('the credentials were refused');
    expect((await new Registry(index_.url).request('GET', '/v2/alice/e2e/app/tags/list', { headers: bearer(await tokenFor(new Registry(index_.url), ['repository:alice/e2e/app:pull'], ['alice', PASSWORD])) })).status, 'nothing pushed yet').to.equal(404);

    const res = await run(process.execPath, berthArgs(args), { cwd: ROOT, input: Buffer.from(`${PASSWORD}\n`) });
    const report = JSON.parse(res.stdout);
    expect(report.images).to.deep.equal(['alice/e2e/app:1.0']);
    // 2 configs, 2 layers, the empty config and the 2 artifacts' blobs: each streamed in one PUT.
    expect(report.blobs).to.deep.equal({ present: 0, mounted: 0, uploaded: 7 });
    const registry = new Registry(index_.url);
    const auth = bearer(await tokenFor(registry, ['repository:alice/e2e/app:pull'], ['alice', PASSWORD]));
    expect(sha256(await manifestBytes(registry, 'alice/e2e/app', '1.0', auth))).to.equal(index.digest);
    expect(await referrerDigests(registry, 'alice/e2e/app', index.digest, auth)).to.deep.equal([sbom]);
  });
});
