// podman's [[registry.mirror]] and containerd's hosts.toml against a Berth in private mode that mirrors a
// Distribution holding library/busybox under the prefix "hub" (docker's own mirror setting, which sends
// Docker Hub's credentials, is in docker-private.test.ts). Both engines send a mirror the credentials they
// hold for the mirror's own host: podman from its auth file (keyed by the mirror's host), ctr those given
// with --user. Without them the mirror refuses (podman's anonymous token request, ctr's manifest request:
// 401), the engine tries the next endpoint (Docker Hub, unreachable here) and the mirror never asks its
// upstream.
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import type { BusyboxImage } from '../helpers/busybox.ts';
import { podmanSetup, removeDir, run, startDockerd, tempDir, type DockerEngine, type Podman } from '../helpers/clients.ts';
import type { TestDistribution } from '../helpers/distribution.ts';
import { mirrorsEnv, startBusyboxUpstream, upstreamRequests } from './helpers.ts';

describe('pull-through cache: podman and containerd mirror settings with a private-mode Berth', function () {
  this.timeout(300_000);
  let upstream: TestDistribution;
  let berth: TestBerth;
  let image: BusyboxImage;
  let robot: string;
  const ROBOT = 'hub+engines';

  before(async () => {
    ({ upstream, image } = await startBusyboxUpstream('mirror-engines-private'));
    berth = await startBerth({ env: { ...mirrorsEnv([{ prefix: 'hub', upstream: upstream.url, dockerMirror: true }]), BERTH_MODE: 'private' } });
    await cli(berth, ['org', 'add', 'hub']);
    robot = /token: (\S+)/.exec(await cli(berth, ['token', 'create', '--robot', ROBOT, '--scope', 'repository:hub/*:pull']))![1]!;
  });
  after(async () => {
    await berth?.destroy();
    await upstream?.stop();
  });

  const logged = (from: number, path: string) =>
    berth.logs
      .slice(from)
      .filter((l) => l.includes(`"path":"${path}"`))
      .map((l) => JSON.parse(l) as { method: string; status: number; user?: string });

  describe('podman', () => {
    let client: Podman;
    let work: string;
    before(() => {
      client = podmanSetup({
        insecureRegistries: [],
        registriesConf: `\n[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n\n[[registry.mirror]]\nlocation = "${berth.host}/hub"\ninsecure = true\n`,
      });
      work = tempDir('podman-mirror-auth');
    });
    after(async () => {
      await client?.cleanup();
      if (work) removeDir(work);
    });

    it('without credentials for the mirror: its anonymous token request refused (401), podman falls back to Docker Hub, the upstream is not asked', async () => {
      // An auth file with no entries (podman refuses a missing one).
      writeFileSync(join(work, 'none.json'), '{"auths":{}}');
      const from = berth.logs.length;
      const before = upstream.accessLog.length;
      const pull = await client.podman(['pull', '--authfile', join(work, 'none.json'), '--signature-policy', client.policy, 'docker.io/library/busybox:latest'], { allowFailure: true });
      expect(pull.code).to.not.equal(0);
      expect(pull.stderr).to.match(/Mirrors also failed: \[127\.0\.0\.1:\d+\/hub\/library\/busybox:latest: unable to retrieve auth token/);
      expect(pull.stderr, 'then Docker Hub itself').to.contain('registry-1.docker.io');
      expect(logged(from, '/token').map((e) => e.status)).to.deep.equal([401]);
      expect(logged(from, '/v2/hub/library/busybox/manifests/latest').filter((e) => e.status === 200)).to.deep.equal([]);
      expect(upstreamRequests(upstream, before)).to.deep.equal([]);
    });

    it("pulls through with a pull-only robot of the prefix's organisation in its auth file, under the mirror's host", async () => {
      const authfile = join(work, 'auth.json');
      const login = await client.podman(['login', '--authfile', authfile, '--tls-verify=false', '--username', ROBOT, '--password-stdin', berth.host], { input: Buffer.from(robot) });
      expect(login.code).to.equal(0);
      const from = berth.logs.length;
      await client.podman(['pull', '--authfile', authfile, '--signature-policy', client.policy, 'docker.io/library/busybox:latest']);
      const id = (await client.podman(['image', 'inspect', '--format', '{{.Id}}', 'docker.io/library/busybox:latest'])).stdout.trim();
      expect(`sha256:${id}`).to.equal(image.configDigest);
      const manifests = logged(from, '/v2/hub/library/busybox/manifests/latest').filter((e) => e.status === 200);
      expect(manifests.length).to.be.greaterThan(0);
      expect(manifests.every((e) => e.user === ROBOT)).to.equal(true);
    });
  });

  describe('containerd', () => {
    let engine: DockerEngine;
    let hosts: string;
    const NAMESPACE = 'berth-mirror-private';
    before(async () => {
      engine = await startDockerd({ insecureRegistries: [berth.host] });
      hosts = tempDir('ctr-hosts-private');
      mkdirSync(join(hosts, 'docker.io'));
      writeFileSync(join(hosts, 'docker.io', 'hosts.toml'), `server = "https://registry-1.docker.io"\n\n[host."${berth.url}"]\n  capabilities = ["pull", "resolve"]\n`);
    });
    after(async () => {
      if (engine) await run('ctr', ['--address', engine.containerdSocket, '--namespace', NAMESPACE, 'images', 'rm', 'docker.io/library/busybox:latest'], { allowFailure: true });
      await engine?.stop();
      if (hosts) removeDir(hosts);
    });
    const ctrPull = (extra: string[]) =>
      run('ctr', ['--address', engine.containerdSocket, '--namespace', NAMESPACE, 'images', 'pull', '--hosts-dir', hosts, ...extra, 'docker.io/library/busybox:latest'], { timeoutMs: 120_000, allowFailure: true });

    it('without credentials: refused (401), ctr goes on to Docker Hub and fails there, the upstream is not asked', async () => {
      const from = berth.logs.length;
      const before = upstream.accessLog.length;
      const pull = await ctrPull([]);
      expect(pull.code).to.not.equal(0);
      const manifests = logged(from, '/v2/library/busybox/manifests/latest');
      expect(manifests.length, 'ctr tried the mirror').to.be.greaterThan(0);
      expect(manifests.every((e) => e.status === 401)).to.equal(true);
      expect(upstreamRequests(upstream, before)).to.deep.equal([]);
    });

    it("pulls through (?ns=docker.io) with the robot's credentials given to ctr --user", async () => {
      const from = berth.logs.length;
      const pull = await ctrPull(['--user', `${ROBOT}:${robot}`]);
      expect(pull.code, pull.stderr).to.equal(0);
      const manifests = logged(from, '/v2/library/busybox/manifests/latest').filter((e) => e.status === 200);
      expect(manifests.length).to.be.greaterThan(0);
      expect(manifests.every((e) => e.user === ROBOT)).to.equal(true);
      const listed = await run('ctr', ['--address', engine.containerdSocket, '--namespace', NAMESPACE, 'images', 'ls', '-q']);
      expect(listed.stdout).to.include('docker.io/library/busybox:latest');
    });
  });
});
