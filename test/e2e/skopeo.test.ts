// skopeo against a real Berth: OCI image layouts built here are copied in and back out, and must come
// back digest-identical; inspect and list-tags must describe what was pushed.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { completedUploads, mounts, requestsSince } from '../helpers/berth-requests.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { OciLayout, pseudoRandomBytes, readOciLayout, type Descriptor, type TarEntry } from '../helpers/oci-layout.ts';

function layerFiles(name: string, size: number): TarEntry[] {
  return [
    { path: `opt/${name}/`, type: 'directory' },
    { path: `opt/${name}/data.bin`, content: pseudoRandomBytes(name, size) },
    { path: `opt/${name}/README`, content: `layer ${name}\n` },
  ];
}

describe('e2e: skopeo copies OCI layouts through Berth', function () {
  this.timeout(120_000);

  let berth: TestBerth;
  let skopeo: Skopeo;
  let work: string;

  before(async function () {
    berth = await startBerth();
    skopeo = new Skopeo();
    work = tempDir('layouts');
  });

  after(async function () {
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
  });

  describe('a single image (config + 2 layers)', function () {
    let layout: OciLayout;
    let manifest: Descriptor;
    let config: Descriptor;
    let layers: Descriptor[];

    before(async function () {
      layout = new OciLayout(join(work, 'single'));
      manifest = await layout.addImage({
        platform: { architecture: 'amd64', os: 'linux' },
        layers: [layerFiles('base', 300_000), layerFiles('app', 120_000)],
        labels: { 'org.opencontainers.image.title': 'berth e2e app' },
      });
      layout.writeIndexJson({ '1.0': manifest });
      const parsed = JSON.parse(readOciLayout(layout.dir).blobs.get(manifest.digest)!.toString()) as {
        config: Descriptor;
        layers: Descriptor[];
      };
      config = parsed.config;
      layers = parsed.layers;
    });

    it('is pushed with every blob really uploaded, and Berth serves the manifest bytes unchanged', async function () {
      const mark = berth.logs.length;
      await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layout.dir}:1.0`, `docker://${berth.host}/e2e/team/app:1.0`]);

      const requests = requestsSince(berth, mark);
      expect(completedUploads(requests), 'uploads completed (config + 2 layers)').to.have.length(3);
      expect(mounts(requests), 'cross-repository mounts').to.have.length(0);
      expect(requests.filter((r) => r.status >= 500), 'server errors').to.deep.equal([]);
      expect(existsSync(join(skopeo.cacheDir, 'blob-info-cache-v1.boltdb')), 'skopeo used its own blob cache').to.equal(true);

      const original = readOciLayout(layout.dir).blobs.get(manifest.digest)!;
      const res = await fetch(`${berth.url}/v2/e2e/team/app/manifests/1.0`, {
        headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(res.status).to.equal(200);
      expect(res.headers.get('docker-content-digest')).to.equal(manifest.digest);
      expect(res.headers.get('content-type')).to.equal('application/vnd.oci.image.manifest.v1+json');
      expect(Buffer.from(await res.arrayBuffer()).equals(original), 'manifest bytes').to.equal(true);
    });

    it('is copied back out into a new layout that is digest-identical to the original', async function () {
      const out = join(work, 'single-pulled');
      await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/e2e/team/app:1.0`, `oci:${out}:1.0`]);
      const original = readOciLayout(layout.dir);
      const pulled = readOciLayout(out);
      expect(pulled.refs.get('1.0')?.digest).to.equal(manifest.digest);
      expect(pulled.refs.get('1.0')?.mediaType).to.equal('application/vnd.oci.image.manifest.v1+json');
      expect([...pulled.blobs.keys()].sort()).to.deep.equal([...original.blobs.keys()].sort());
      expect(pulled.blobs.size).to.equal(4); // manifest, config, 2 layers
    });

    it('answers skopeo inspect and list-tags', async function () {
      // A second tag for the same manifest: every blob is there already, nothing is uploaded again.
      const mark = berth.logs.length;
      await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layout.dir}:1.0`, `docker://${berth.host}/e2e/team/app:latest`]);
      expect(completedUploads(requestsSince(berth, mark)), 'blobs uploaded for the second tag').to.have.length(0);

      const tags = await skopeo.json<{ Repository: string; Tags: string[] }>([
        'list-tags',
        '--tls-verify=false',
        `docker://${berth.host}/e2e/team/app`,
      ]);
      expect(tags.Repository).to.equal(`${berth.host}/e2e/team/app`);
      expect([...tags.Tags].sort()).to.deep.equal(['1.0', 'latest']);

      const info = await skopeo.json<{
        Name: string;
        Digest: string;
        RepoTags: string[];
        Architecture: string;
        Os: string;
        Layers: string[];
        Labels: Record<string, string>;
      }>(['inspect', '--tls-verify=false', `docker://${berth.host}/e2e/team/app:latest`]);
      expect(info.Name).to.equal(`${berth.host}/e2e/team/app`);
      expect(info.Digest).to.equal(manifest.digest);
      expect([...info.RepoTags].sort()).to.deep.equal(['1.0', 'latest']);
      expect(info.Architecture).to.equal('amd64');
      expect(info.Os).to.equal('linux');
      expect(info.Layers).to.deep.equal(layers.map((l) => l.digest));
      expect(info.Labels).to.deep.equal({ 'org.opencontainers.image.title': 'berth e2e app' });

      const rawConfig = await skopeo.run(['inspect', '--tls-verify=false', '--config', '--raw', `docker://${berth.host}/e2e/team/app:1.0`]);
      expect(rawConfig.stdout).to.equal(readOciLayout(layout.dir).blobs.get(config.digest)!.toString());

      const byDigest = await skopeo.json<{ Digest: string }>([
        'inspect',
        '--tls-verify=false',
        `docker://${berth.host}/e2e/team/app@${manifest.digest}`,
      ]);
      expect(byDigest.Digest).to.equal(manifest.digest);
    });

    it('mounts the layers into another repository instead of uploading them again', async function () {
      const mark = berth.logs.length;
      await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layout.dir}:1.0`, `docker://${berth.host}/e2e/mirror/app:1.0`]);
      const requests = requestsSince(berth, mark);
      const mounted = mounts(requests);
      const uploaded = completedUploads(requests);
      // skopeo reuses layers it saw in e2e/team/app through a cross-repository mount; the small config
      // blob it simply uploads again.
      expect(mounted.map((r) => r.path), 'mounts').to.have.length(2);
      expect(mounted.every((r) => r.path === '/v2/e2e/mirror/app/blobs/uploads/')).to.equal(true);
      expect(uploaded.length, 'uploads').to.be.at.most(1);

      const out = join(work, 'mirror-pulled');
      await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/e2e/mirror/app:1.0`, `oci:${out}:1.0`]);
      const pulled = readOciLayout(out);
      expect(pulled.refs.get('1.0')?.digest).to.equal(manifest.digest);
      expect([...pulled.blobs.keys()].sort()).to.deep.equal([...readOciLayout(layout.dir).blobs.keys()].sort());
    });

    it('still serves everything after Berth restarts', async function () {
      await berth.restart();
      const tags = await skopeo.json<{ Tags: string[] }>(['list-tags', '--tls-verify=false', `docker://${berth.host}/e2e/team/app`]);
      expect([...tags.Tags].sort()).to.deep.equal(['1.0', 'latest']);
      const out = join(work, 'single-after-restart');
      await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/e2e/team/app:latest`, `oci:${out}:latest`]);
      const pulled = readOciLayout(out);
      expect(pulled.refs.get('latest')?.digest).to.equal(manifest.digest);
      expect([...pulled.blobs.keys()].sort()).to.deep.equal([...readOciLayout(layout.dir).blobs.keys()].sort());
    });

    it('deletes the image with skopeo delete', async function () {
      await skopeo.run(['delete', '--tls-verify=false', `docker://${berth.host}/e2e/mirror/app:1.0`]);
      const info = await skopeo.run(['inspect', '--tls-verify=false', `docker://${berth.host}/e2e/mirror/app:1.0`], {
        allowFailure: true,
      });
      expect(info.code).to.not.equal(0);
      const byDigest = await fetch(`${berth.url}/v2/e2e/mirror/app/manifests/${manifest.digest}`, { method: 'HEAD' });
      expect(byDigest.status).to.equal(404);
      // Only that repository lost it.
      const original = await fetch(`${berth.url}/v2/e2e/team/app/manifests/${manifest.digest}`, {
        method: 'HEAD',
        headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(original.status).to.equal(200);
    });

    it('fails list-tags and inspect for a repository that was never pushed', async function () {
      const tags = await skopeo.run(['list-tags', '--tls-verify=false', `docker://${berth.host}/e2e/team/nothing`], {
        allowFailure: true,
      });
      expect(tags.code).to.not.equal(0);
      const info = await skopeo.run(['inspect', '--tls-verify=false', `docker://${berth.host}/e2e/team/app:missing`], {
        allowFailure: true,
      });
      expect(info.code).to.not.equal(0);
      expect(info.stderr).to.match(/manifest unknown/i);
    });
  });

  describe('a multi-platform index (linux/amd64 + linux/arm64) copied with --all', function () {
    let layout: OciLayout;
    let index: Descriptor;
    let amd64: Descriptor;
    let arm64: Descriptor;

    before(async function () {
      layout = new OciLayout(join(work, 'multi'));
      amd64 = await layout.addImage({
        platform: { architecture: 'amd64', os: 'linux' },
        layers: [layerFiles('multi-amd64-base', 200_000), layerFiles('multi-amd64-app', 50_000)],
      });
      arm64 = await layout.addImage({
        platform: { architecture: 'arm64', os: 'linux' },
        layers: [layerFiles('multi-arm64-base', 200_000), layerFiles('multi-arm64-app', 50_000)],
      });
      index = layout.addIndex([
        { ...amd64, platform: { architecture: 'amd64', os: 'linux' } },
        { ...arm64, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
      ]);
      layout.writeIndexJson({ '2.0': index });
    });

    it('is pushed with --all and pulled back with --all digest-identical', async function () {
      const mark = berth.logs.length;
      const ref = `docker://${berth.host}/e2e/team/multiarch:2.0`;
      await skopeo.run(['copy', '--all', '--dest-tls-verify=false', `oci:${layout.dir}:2.0`, ref]);
      const requests = requestsSince(berth, mark);
      expect(completedUploads(requests), 'uploads completed (2 configs + 4 layers)').to.have.length(6);
      expect(mounts(requests), 'cross-repository mounts').to.have.length(0);

      const out = join(work, 'multi-pulled');
      await skopeo.run(['copy', '--all', '--src-tls-verify=false', ref, `oci:${out}:2.0`]);
      const original = readOciLayout(layout.dir);
      const pulled = readOciLayout(out);
      expect(pulled.refs.get('2.0')?.digest).to.equal(index.digest);
      expect(pulled.refs.get('2.0')?.mediaType).to.equal('application/vnd.oci.image.index.v1+json');
      expect([...pulled.blobs.keys()].sort()).to.deep.equal([...original.blobs.keys()].sort());
      expect(pulled.blobs.size).to.equal(9); // index, 2 manifests, 2 configs, 4 layers
    });

    it('serves the index bytes unchanged and resolves each platform', async function () {
      const ref = `docker://${berth.host}/e2e/team/multiarch:2.0`;
      const raw = await skopeo.run(['inspect', '--raw', '--tls-verify=false', ref]);
      expect(raw.stdout).to.equal(readOciLayout(layout.dir).blobs.get(index.digest)!.toString());

      const blobs = readOciLayout(layout.dir).blobs;
      for (const [arch, image] of [
        ['amd64', amd64],
        ['arm64', arm64],
      ] as const) {
        // skopeo reports the digest of the index it resolved, and the layers of the platform's image.
        const info = await skopeo.json<{ Digest: string; Architecture: string; Os: string; Layers: string[] }>([
          'inspect',
          '--tls-verify=false',
          '--override-os',
          'linux',
          '--override-arch',
          arch,
          ref,
        ]);
        const platformLayers = (JSON.parse(blobs.get(image.digest)!.toString()) as { layers: Descriptor[] }).layers;
        expect(info.Digest, arch).to.equal(index.digest);
        expect(info.Architecture).to.equal(arch);
        expect(info.Os).to.equal('linux');
        expect(info.Layers, arch).to.deep.equal(platformLayers.map((l) => l.digest));

        const raw = await skopeo.run(['inspect', '--raw', '--tls-verify=false', `docker://${berth.host}/e2e/team/multiarch@${image.digest}`]);
        expect(raw.stdout, arch).to.equal(blobs.get(image.digest)!.toString());
      }

      const tags = await skopeo.json<{ Tags: string[] }>(['list-tags', '--tls-verify=false', `docker://${berth.host}/e2e/team/multiarch`]);
      expect(tags.Tags).to.deep.equal(['2.0']);
    });
  });
});
