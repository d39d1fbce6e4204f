// podman against a real Berth, with its own storage.conf, registries.conf and containers.conf (never
// /etc): it loads the busybox image archive written here, pushes it, forgets it, pulls it back, checks
// the digest and runs it with runc.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { podmanSetup, removeDir, tempDir, type Podman } from '../helpers/clients.ts';
import { sha256 } from '../helpers/oci-layout.ts';

describe('e2e: podman pushes, pulls and runs a busybox image through Berth', function () {
  this.timeout(180_000);

  let berth: TestBerth;
  let client: Podman;
  let image: BusyboxImage;
  let work: string;
  let ref: string;
  let pushedDigest: string;

  before(async function () {
    berth = await startBerth();
    ref = `${berth.host}/e2e/podman/busybox:1`;
    image = await busyboxImage('podman');
    client = podmanSetup({ insecureRegistries: [berth.host] });
    work = tempDir('podman-files');
  });

  after(async function () {
    await client?.cleanup();
    await berth?.destroy();
    if (work) removeDir(work);
  });

  const podman = (args: string[], options?: Parameters<Podman['podman']>[1]) => client.podman(args, options);
  const inspect = async (format: string) => (await podman(['image', 'inspect', '--format', format, ref])).stdout.trim();

  it('loads an image archive written by the test', async function () {
    const loaded = await podman(['load', '--signature-policy', client.policy], { input: await image.archive([ref]) });
    expect(loaded.stdout).to.include(`Loaded image: ${ref}`);
    expect(`sha256:${await inspect('{{.Id}}')}`, 'image ID is the config digest').to.equal(image.configDigest);
  });

  it('pushes it, and Berth serves the manifest under the digest podman reported', async function () {
    const digestFile = join(work, 'digest');
    await podman(['push', '--signature-policy', client.policy, '--digestfile', digestFile, ref]);
    pushedDigest = readFileSync(digestFile, 'utf8').trim();
    expect(pushedDigest).to.match(/^sha256:[0-9a-f]{64}$/);

    const res = await fetch(`${berth.url}/v2/e2e/podman/busybox/manifests/1`, {
      headers: {
        Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
      },
    });
    expect(res.status).to.equal(200);
    expect(res.headers.get('docker-content-digest')).to.equal(pushedDigest);
    const body = Buffer.from(await res.arrayBuffer());
    expect(sha256(body)).to.equal(pushedDigest);
    const manifest = JSON.parse(body.toString()) as { config: { digest: string }; layers: { digest: string }[] };
    expect(manifest.config.digest).to.equal(image.configDigest);
    expect(manifest.layers).to.have.length(1);
  });

  it('pulls it back after the local copy is removed, with the same digest and image ID', async function () {
    await podman(['rmi', ref]);
    const gone = await podman(['image', 'exists', ref], { allowFailure: true });
    expect(gone.code, 'the image is gone locally').to.equal(1);

    await podman(['pull', '--signature-policy', client.policy, ref]);
    expect(await inspect('{{.Digest}}')).to.equal(pushedDigest);
    expect(`sha256:${await inspect('{{.Id}}')}`).to.equal(image.configDigest);
    expect(await inspect('{{json .RepoDigests}}')).to.include(`${berth.host}/e2e/podman/busybox@${pushedDigest}`);
  });

  it('runs the pulled image with runc', async function () {
    const result = await podman(['run', '--rm', '--network', 'none', ref, 'echo', 'hello']);
    expect(result.stdout).to.equal('hello\n');
  });
});
