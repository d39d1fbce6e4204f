// docker against a real Berth: a private dockerd loads a busybox image written here (no docker build, no
// network), pushes it to Berth, forgets it, pulls it back by tag and by digest, and runs it.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { startDockerd, type DockerEngine } from '../helpers/clients.ts';
import { MediaTypes } from '../helpers/oci-layout.ts';

describe('e2e: docker pushes, pulls and runs a busybox image through Berth', function () {
  this.timeout(180_000);

  let berth: TestBerth;
  let engine: DockerEngine;
  let image: BusyboxImage;
  let ref: string;
  let pushedDigest: string;

  before(async function () {
    berth = await startBerth();
    ref = `${berth.host}/e2e/busybox:1`;
    image = await busyboxImage('docker');
    engine = await startDockerd({ insecureRegistries: [berth.host] });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && engine) {
      console.error(`--- dockerd log (tail)\n${engine.log().trimEnd().split('\n').slice(-30).join('\n')}`);
    }
  });

  after(async function () {
    await engine?.stop();
    await berth?.destroy();
  });

  const inspect = async (format: string) => (await engine.docker(['image', 'inspect', '--format', format, ref])).stdout.trim();

  it('loads an image archive written by the test', async function () {
    const loaded = await engine.docker(['load'], { input: await image.archive([ref]) });
    expect(loaded.stdout).to.include(`Loaded image: ${ref}`);
    expect(await inspect('{{.Id}}'), 'image ID is the config digest').to.equal(image.configDigest);
    expect(await inspect('{{json .RepoDigests}}')).to.equal('[]');
  });

  it('pushes it, and Berth serves the manifest under the digest docker reported', async function () {
    const pushed = await engine.docker(['push', ref]);
    const match = /^1: digest: (sha256:[0-9a-f]{64}) size: (\d+)$/m.exec(pushed.stdout);
    expect(match, `push output:\n${pushed.stdout}`).to.not.equal(null);
    pushedDigest = match![1]!;

    const res = await fetch(`${berth.url}/v2/e2e/busybox/manifests/1`, { headers: { Accept: MediaTypes.dockerManifest } });
    expect(res.status).to.equal(200);
    expect(res.headers.get('docker-content-digest')).to.equal(pushedDigest);
    expect(res.headers.get('content-type')).to.equal(MediaTypes.dockerManifest);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.length).to.equal(Number(match![2]));
    const manifest = JSON.parse(body.toString()) as { config: { digest: string }; layers: { mediaType: string; digest: string }[] };
    expect(manifest.config.digest).to.equal(image.configDigest);
    expect(manifest.layers).to.have.length(1);
    expect(manifest.layers[0]!.mediaType).to.equal(MediaTypes.dockerLayerGzip);
    const layer = await fetch(`${berth.url}/v2/e2e/busybox/blobs/${manifest.layers[0]!.digest}`, { method: 'HEAD' });
    expect(layer.status).to.equal(200);
  });

  it('pushes it to a second repository by mounting the layer from the first', async function () {
    const copy = `${berth.host}/e2e/team/busybox-copy:1`;
    await engine.docker(['tag', ref, copy]);
    const pushed = await engine.docker(['push', copy]);
    expect(pushed.stdout).to.match(/Mounted from e2e\/busybox/);
    expect(pushed.stdout).to.include(`1: digest: ${pushedDigest} `);
    await engine.docker(['rmi', copy]);
  });

  it('pulls it back after the local copy is removed, with the same digest and image ID', async function () {
    await engine.docker(['rmi', ref]);
    const gone = await engine.docker(['image', 'inspect', ref], { allowFailure: true });
    expect(gone.code, 'the image is gone locally').to.not.equal(0);

    const pulled = await engine.docker(['pull', ref]);
    expect(pulled.stdout).to.include(`Digest: ${pushedDigest}`);
    expect(await inspect('{{.Id}}')).to.equal(image.configDigest);
    expect(JSON.parse(await inspect('{{json .RepoDigests}}'))).to.deep.equal([`${berth.host}/e2e/busybox@${pushedDigest}`]);

    const byDigest = await engine.docker(['pull', `${berth.host}/e2e/busybox@${pushedDigest}`]);
    expect(byDigest.stdout).to.include(`Digest: ${pushedDigest}`);
  });

  it('runs the pulled image', async function () {
    const result = await engine.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'hello']);
    expect(result.stdout).to.equal('hello\n');
  });
});
