// The engines' own mirror settings, unchanged, against a Berth that mirrors a Distribution holding
// library/busybox as "docker.io": docker's registry-mirrors (no prefix: the dockerMirror), containerd's
// hosts.toml (?ns=docker.io, with ctr --hosts-dir), podman's [[registry.mirror]] (a location with the
// prefix), and skopeo through the prefix. Each pull ends with the image's own config digest.
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { podmanSetup, removeDir, run, Skopeo, startDockerd, tempDir, type DockerEngine, type Podman } from '../helpers/clients.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { getManifest, mirrorsEnv, seedBusybox, upstreamRequests } from './helpers.ts';

describe('pull-through cache: the engines\' mirror settings', function () {
  this.timeout(300_000);
  let upstream: TestDistribution;
  let berth: TestBerth;
  let image: BusyboxImage;
  let skopeo: Skopeo;
  const mirror = new Registry('http://127.0.0.1:0');

  before(async () => {
    upstream = await startDistribution();
    image = await busyboxImage('mirror');
    skopeo = new Skopeo();
    await seedBusybox(upstream, image, skopeo);
    berth = await startBerth({ env: mirrorsEnv([{ prefix: 'docker.io', upstream: upstream.url, dockerMirror: true }]) });
    mirror.base = berth.url;
  });
  after(async () => {
    skopeo?.cleanup();
    await berth?.destroy();
    await upstream?.stop();
  });

  it('skopeo copies through the prefix', async () => {
    const inspected = await skopeo.json<{ Digest: string }>(['inspect', '--tls-verify=false', `docker://${berth.host}/docker.io/library/busybox:latest`]);
    const config = await skopeo.run(['inspect', '--config', '--raw', '--tls-verify=false', `docker://${berth.host}/docker.io/library/busybox:latest`]);
    expect(Buffer.from(config.stdout).equals(image.config)).to.equal(true);
    expect((await getManifest(mirror, 'docker.io/library/busybox', inspected.Digest)).status).to.equal(200);
  });

  describe('docker and containerd', () => {
    let engine: DockerEngine;
    before(async () => {
      engine = await startDockerd({ insecureRegistries: [berth.host], registryMirrors: [berth.url] });
    });
    after(() => engine?.stop());

    it('docker pulls an unprefixed name through registry-mirrors (the dockerMirror), and a local repository of the same name wins', async () => {
      await engine.docker(['pull', 'busybox:latest']);
      const id = (await engine.docker(['image', 'inspect', '--format', '{{.Id}}', 'busybox:latest'])).stdout.trim();
      expect(id).to.equal(image.configDigest);
      // The pull came through the mirror (no network here), and was stored under the prefix.
      await waitFor(() => berth.logs.some((l) => l.includes('"path":"/v2/library/busybox/manifests/latest"') && l.includes('"status":200')), 'the mirror\'s access line');
      expect((await mirror.request('GET', '/v2/docker.io/library/busybox/tags/list')).json.tags).to.deep.equal(['latest']);

      // A local repository named like a Docker Hub one is served as itself; the mirrored copy stays under its prefix.
      const local = await mirror.pushImage('library/busybox', 'latest', { layers: ['a local busybox'] });
      expect((await getManifest(mirror, 'library/busybox', 'latest')).headers['docker-content-digest']).to.equal(local.digest);
      expect((await getManifest(mirror, 'docker.io/library/busybox', 'latest')).headers['docker-content-digest']).not.to.equal(local.digest);
      await mirror.request('DELETE', `/v2/library/busybox/manifests/${local.digest}`);
    });

    it('containerd pulls through hosts.toml (?ns=docker.io) with ctr --hosts-dir', async () => {
      const hosts = tempDir('ctr-hosts');
      try {
        mkdirSync(join(hosts, 'docker.io'));
        writeFileSync(
          join(hosts, 'docker.io', 'hosts.toml'),
          `server = "https://registry-1.docker.io"\n\n[host."${berth.url}"]\n  capabilities = ["pull", "resolve"]\n`,
        );
        await run('ctr', ['--address', engine.containerdSocket, '--namespace', 'berth-mirror-test', 'images', 'pull', '--hosts-dir', hosts, 'docker.io/library/busybox:latest'], { timeoutMs: 120_000 });
        await waitFor(() => berth.logs.some((l) => l.includes('"path":"/v2/library/busybox/manifests/latest"') && l.includes('"status":200')), 'the mirror\'s access line');
        const listed = await run('ctr', ['--address', engine.containerdSocket, '--namespace', 'berth-mirror-test', 'images', 'ls', '-q']);
        expect(listed.stdout).to.include('docker.io/library/busybox:latest');
      } finally {
        await run('ctr', ['--address', engine.containerdSocket, '--namespace', 'berth-mirror-test', 'images', 'rm', 'docker.io/library/busybox:latest'], { allowFailure: true });
        removeDir(hosts);
      }
    });
  });

  describe('podman', () => {
    let client: Podman;
    before(() => {
      client = podmanSetup({
        insecureRegistries: [],
        registriesConf: `\n[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n\n[[registry.mirror]]\nlocation = "${berth.host}/docker.io"\ninsecure = true\n`,
      });
    });
    after(() => client?.cleanup());

    it('pulls through a [[registry.mirror]] whose location carries the prefix', async () => {
      const before = upstream.accessLog.length;
      await client.podman(['pull', '--signature-policy', client.policy, 'docker.io/library/busybox:latest']);
      const id = (await client.podman(['image', 'inspect', '--format', '{{.Id}}', 'docker.io/library/busybox:latest'])).stdout.trim();
      expect(`sha256:${id}`).to.equal(image.configDigest);
      await waitFor(() => berth.logs.some((l) => l.includes('"path":"/v2/docker.io/library/busybox/manifests/latest"')), 'the mirror\'s access line');
      // Warm by now (skopeo and docker pulled it): the upstream was not asked for a blob.
      expect(upstreamRequests(upstream, before).filter((r) => r.includes('/blobs/'))).to.deep.equal([]);
    });
  });
});
