// berth pull against a real Berth: whiteouts between layers, the host's platform from an index, a
// layer download cut mid-body that resumes with Range, a blob corrupted on the registry's disk, and
// Windows images refused on Linux before any layer is fetched.
import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { requestsSince } from '../helpers/berth-requests.ts';
import { addImage, berthCli, clientHome, containerOutput, filesIn, WHITEOUT_LAYERS } from '../helpers/berth-client.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { hexOf, hostArchitecture, makeLayer, OciLayout, pseudoRandomBytes, type Descriptor } from '../helpers/oci-layout.ts';

const OTHER_ARCH = hostArchitecture() === 'arm64' ? 'amd64' : 'arm64';

describe('client: berth pull', function () {
  this.timeout(120_000);

  let berth: TestBerth;
  let skopeo: Skopeo;
  let work: string;
  let busybox: BusyboxImage;
  const homes: string[] = [];

  function home(): string {
    const dir = clientHome();
    homes.push(dir);
    return dir;
  }

  async function push(layout: OciLayout, tag: string, top: Descriptor, repo: string): Promise<string> {
    layout.writeIndexJson({ [tag]: top });
    await skopeo.run(['copy', '--all', '--dest-tls-verify=false', `oci:${layout.dir}:${tag}`, `docker://${berth.host}/${repo}:${tag}`]);
    return `${berth.host}/${repo}:${tag}`;
  }

  function blobGets(mark: number): string[] {
    return requestsSince(berth, mark)
      .filter((r) => r.route === 'blob' && r.method === 'GET')
      .map((r) => r.path);
  }

  before(async function () {
    berth = await startBerth();
    skopeo = new Skopeo();
    work = tempDir('client-pull');
    busybox = await busyboxImage('client-pull');
  });

  after(async function () {
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
    for (const dir of homes) removeDir(dir);
  });

  it('applies whiteouts: a file and an opaque directory of a lower layer are gone', async function () {
    const layout = new OciLayout(join(work, 'whiteout'));
    const lower = await makeLayer(WHITEOUT_LAYERS.lower);
    const upper = await makeLayer(WHITEOUT_LAYERS.upper);
    const manifest = addImage(layout, [busybox.layer, lower, upper], { architecture: hostArchitecture(), os: 'linux', config: { Env: ['PATH=/bin'] } });
    const image = await push(layout, 'v1', manifest, 'client/whiteout');
    const listing = await containerOutput(home(), image, ['sh', '-c', 'ls /opt /data'], (rootfs) =>
      ['data', 'opt'].map((dir) => `/${dir}:\n${readdirSync(join(rootfs, dir)).sort().join('\n')}\n`).join('\n'),
    );
    expect(listing).to.equal(WHITEOUT_LAYERS.expected);
  });

  it('fetches a layer listed twice once, and applies it twice', async function () {
    const layout = new OciLayout(join(work, 'twice'));
    const twice = await makeLayer([{ path: 'log', content: 'same layer\n' }]);
    const manifest = addImage(layout, [busybox.layer, twice, twice], { architecture: hostArchitecture(), os: 'linux', config: { Env: ['PATH=/bin'] } });
    const image = await push(layout, 'v1', manifest, 'client/twice');
    const mark = berth.logs.length;
    const log = await containerOutput(home(), image, ['cat', '/log'], (rootfs) => readFileSync(join(rootfs, 'log'), 'utf8'));
    expect(log).to.equal('same layer\n');
    expect(blobGets(mark).filter((p) => p.endsWith(twice.digest))).to.have.length(1);
  });

  describe('an index with linux/amd64 and linux/arm64', function () {
    let image: string;
    let platformManifests: Record<string, Descriptor>;

    before(async function () {
      const layout = new OciLayout(join(work, 'index'));
      platformManifests = {};
      for (const arch of ['amd64', 'arm64']) {
        const marker = await makeLayer([{ path: 'platform', content: `${arch}\n` }]);
        platformManifests[arch] = addImage(layout, [busybox.layer, marker], { architecture: arch, os: 'linux', config: { Env: ['PATH=/bin'] } });
      }
      const index = layout.addIndex([
        { ...platformManifests.amd64!, platform: { os: 'linux', architecture: 'amd64' } },
        { ...platformManifests.arm64!, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ]);
      image = await push(layout, 'multi', index, 'client/multi');
    });

    it('yields the host\'s platform', async function () {
      const store = home();
      const mark = berth.logs.length;
      const pulled = await berthCli(store, ['pull', image]);
      expect(pulled.code, pulled.stderr).to.equal(0);
      const fetched = requestsSince(berth, mark).filter((r) => r.route === 'manifest').map((r) => r.path);
      expect(fetched).to.include(`/v2/client/multi/manifests/${platformManifests[hostArchitecture()]!.digest}`);
      expect(fetched).to.not.include(`/v2/client/multi/manifests/${platformManifests[OTHER_ARCH]!.digest}`);
      const images = await berthCli(store, ['images']);
      expect(images.stdout).to.include(`linux/${hostArchitecture()}`);
      const platform = await containerOutput(store, image, ['cat', '/platform'], (rootfs) => readFileSync(join(rootfs, 'platform'), 'utf8'));
      expect(platform).to.equal(`${hostArchitecture()}\n`);
    });

    it('yields another platform with --platform, and refuses one the index lacks', async function () {
      const store = home();
      const pulled = await berthCli(store, ['pull', '--platform', `linux/${OTHER_ARCH}`, image]);
      expect(pulled.code, pulled.stderr).to.equal(0);
      expect((await berthCli(store, ['images'])).stdout).to.include(`linux/${OTHER_ARCH}`);
      const missing = await berthCli(store, ['pull', '--platform', 'linux/s390x', image]);
      expect(missing.code).to.equal(1);
      expect(missing.stderr).to.match(/no manifest for linux\/s390x \(it offers: linux\/amd64, linux\/arm64\/v8\)/);
    });
  });

  describe('through a connection that breaks mid-layer', function () {
    let proxy: FaultProxy;
    let big: Awaited<ReturnType<typeof makeLayer>>;
    let imagePath: string;

    before(async function () {
      const layout = new OciLayout(join(work, 'resume'));
      big = await makeLayer([{ path: 'data.bin', content: pseudoRandomBytes('resume', 3_000_000) }]);
      const manifest = addImage(layout, [busybox.layer, big], { architecture: hostArchitecture(), os: 'linux', config: { Env: ['PATH=/bin'] } });
      await push(layout, 'big', manifest, 'client/resume');
      proxy = await startFaultProxy(berth.url);
      imagePath = `${new URL(proxy.url).host}/client/resume:big`;
    });

    after(() => proxy?.close());

    it('resumes with Range, within a pull and in the next pull', async function () {
      const store = home();
      const layerPath = `/v2/client/resume/blobs/${big.digest}`;
      // Three cuts: the pull retries twice (each resuming), then gives up and keeps what it has.
      proxy.rules.push({ match: (m, url) => m === 'GET' && url === layerPath, fault: { cutAfterBytes: 400_000 }, remaining: 3 });
      const first = await berthCli(store, ['pull', imagePath]);
      expect(first.code).to.equal(1);
      expect(first.stderr, first.stderr).to.match(/download interrupted at byte \d+ of \d+.*pull again to resume/);
      const partial = filesIn(store, 'downloads');
      expect(partial).to.deep.equal([`sha256-${hexOf(big.digest)}`]);

      const second = await berthCli(store, ['pull', imagePath]);
      expect(second.code, second.stderr).to.equal(0);
      const ranges = proxy.requests.filter((r) => r.url === layerPath).map((r) => r.range ?? 'none');
      expect(ranges).to.have.length(4);
      expect(ranges[0]).to.equal('none');
      const offsets = ranges.slice(1).map((r) => Number(/^bytes=(\d+)-$/.exec(r)?.[1]));
      // Each attempt starts where the bytes on disk end: later and later, never from 0.
      expect(offsets.every((o, i) => o > 0 && (i === 0 || o > offsets[i - 1]!))).to.equal(true);
      expect(readFileSync(join(store, 'blobs', 'sha256', hexOf(big.digest))).equals(big.gz)).to.equal(true);
      expect(filesIn(store, 'downloads')).to.deep.equal([]);
    });
  });

  it('fails on a blob corrupted on the registry\'s disk and keeps nothing of it', async function () {
    const layout = new OciLayout(join(work, 'corrupt'));
    const layer = await makeLayer([{ path: 'payload', content: pseudoRandomBytes('corrupt', 200_000) }]);
    const manifest = addImage(layout, [layer], { architecture: hostArchitecture(), os: 'linux', config: {} });
    const image = await push(layout, 'bad', manifest, 'client/corrupt');
    // A real disk fault: the stored bytes change, their length does not.
    const hex = hexOf(layer.digest);
    const stored = join(berth.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    const bytes = readFileSync(stored);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(stored, bytes);

    const store = home();
    const result = await berthCli(store, ['pull', image]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include(`layer ${layer.digest}: received 200`);
    expect(result.stderr).to.match(/with digest sha256:[a-f0-9]{64}; nothing was kept/);
    expect(filesIn(store, 'blobs/sha256'), 'blobs').to.deep.equal([]);
    expect(filesIn(store, 'downloads'), 'partial downloads').to.deep.equal([]);
    expect(existsSync(join(store, 'images.json')), 'images index').to.equal(false);
  });

  it('reads only the client\'s settings: a wrong S3 setting does not stop a pull, while berth serve refuses it', async function () {
    const layout = new OciLayout(join(work, 'concern'));
    const layer = await makeLayer([{ path: 'hello', content: 'hello\n' }]);
    const manifest = addImage(layout, [layer], { architecture: hostArchitecture(), os: 'linux', config: {} });
    const image = await push(layout, 'v1', manifest, 'client/concern');
    const badS3 = { BERTH_S3_REGION: 'bad region!' };

    const store = home();
    const pulled = await berthCli(store, ['pull', image], { env: badS3 });
    expect(pulled.code, pulled.stderr).to.equal(0);
    const images = await berthCli(store, ['images'], { env: badS3 });
    expect(images.stdout).to.include(`${berth.host}/client/concern`);
    // The client still checks its own settings.
    const wrongRuntime = await berthCli(store, ['pull', image], { env: { BERTH_RUNTIME: 'docker' } });
    expect(wrongRuntime.code).to.equal(2);
    expect(wrongRuntime.stderr).to.include('BERTH_RUNTIME');

    const served = await berthCli(store, ['serve'], { env: { ...badS3, BERTH_LISTEN: '127.0.0.1:0', BERTH_DATA: join(work, 'concern-data') } });
    expect(served.code).to.equal(2);
    expect(served.stderr).to.include('BERTH_S3_REGION: expected a region name');
  });

  describe('a Windows-only image on Linux', function () {
    const windowsConfig = (osVersion: string) => ({
      architecture: 'amd64',
      os: 'windows',
      'os.version': osVersion,
      config: { Cmd: ['cmd', '/S', '/C', 'echo hello'] },
    });

    it('is refused with its OS and os.version before any layer is fetched', async function () {
      const layout = new OciLayout(join(work, 'windows'));
      const layer = await makeLayer([{ path: 'Files/', type: 'directory' }, { path: 'Files/app.exe', content: pseudoRandomBytes('exe', 10_000) }]);
      const manifest = addImage(layout, [layer], windowsConfig('10.0.17763.5329'));
      const image = await push(layout, 'ltsc2019', manifest, 'client/windows');
      const mark = berth.logs.length;
      const result = await berthCli(home(), ['run', '--rm', image]);
      expect(result.code).to.equal(125);
      expect(result.stderr).to.include(
        `${image} is a Windows image (os windows, os.version 10.0.17763.5329 (Windows Server 2019)): Linux hosts cannot run Windows containers`,
      );
      expect(blobGets(mark), 'layer GETs').to.not.include(`/v2/client/windows/blobs/${layer.digest}`);
    });

    it('is refused from an index of Windows platforms without fetching anything but the index', async function () {
      const layout = new OciLayout(join(work, 'windows-index'));
      const entries: Descriptor[] = [];
      for (const version of ['10.0.17763.5329', '10.0.20348.2113']) {
        const layer = await makeLayer([{ path: 'Files/version.txt', content: version }]);
        const manifest = addImage(layout, [layer], windowsConfig(version));
        entries.push({ ...manifest, platform: { os: 'windows', architecture: 'amd64', 'os.version': version } });
      }
      const image = await push(layout, 'multi', layout.addIndex(entries), 'client/windows-multi');
      const mark = berth.logs.length;
      const result = await berthCli(home(), ['pull', image]);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.include('os.version 10.0.17763.5329 (Windows Server 2019), 10.0.20348.2113 (Windows Server 2022)');
      expect(result.stderr).to.include('Linux hosts cannot run Windows containers');
      expect(blobGets(mark), 'blob GETs').to.deep.equal([]);
      const manifestGets = requestsSince(berth, mark).filter((r) => r.route === 'manifest').map((r) => r.path);
      for (const entry of entries) expect(manifestGets, 'platform manifests fetched').to.not.include(`/v2/client/windows-multi/manifests/${entry.digest}`);
    });
  });
});
