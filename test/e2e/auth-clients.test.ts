// The token flow with the real clients: skopeo with --dest-creds/--src-creds, docker login/push/pull/
// logout, podman login/push/pull, against a Berth in public-index mode with a private repository.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { addUser, cli } from '../helpers/auth.ts';
import { berthCli, clientHome } from '../helpers/berth-client.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { podmanSetup, removeDir, Skopeo, startDockerd, tempDir, type DockerEngine, type Podman } from '../helpers/clients.ts';
import { OciLayout } from '../helpers/oci-layout.ts';

describe('e2e: skopeo, docker and podman through Docker token auth', function () {
  this.timeout(180_000);

  let berth: TestBerth;
  let skopeo: Skopeo;
  let work: string;
  let layoutDir: string;
  const password = 'alice-password-1';

  before(async function () {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index' } });
    await addUser(berth, 'alice', password);
    // Made private before its first push: it never exists publicly, not even for a moment.
    for (const name of ['alice/private', 'alice/docker', 'alice/podman']) await cli(berth, ['repo', 'visibility', name, 'private']);
    skopeo = new Skopeo();
    work = tempDir('auth-e2e');
    const layout = new OciLayout(join(work, 'layout'));
    const manifest = await layout.addImage({
      platform: { architecture: 'amd64', os: 'linux' },
      layers: [[{ path: 'hello.txt', content: 'hello from a private repository\n' }]],
    });
    layout.writeIndexJson({ '1': manifest });
    layoutDir = layout.dir;
  });

  after(async function () {
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
  });

  describe('skopeo', function () {
    it('pushes to a private repository and pulls it back with credentials', async function () {
      await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', `alice:${password}`, `oci:${layoutDir}:1`, `docker://${berth.host}/alice/private:1`]);
      await skopeo.run(['copy', '--src-tls-verify=false', '--src-creds', `alice:${password}`, `docker://${berth.host}/alice/private:1`, `oci:${join(work, 'back')}:1`]);
      const tags = await skopeo.json<{ Tags: string[] }>(['list-tags', '--tls-verify=false', '--creds', `alice:${password}`, `docker://${berth.host}/alice/private`]);
      expect(tags.Tags).to.deep.equal(['1']);
    });

    it('pulls a public repository anonymously, and is refused a private one', async function () {
      await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', `alice:${password}`, `oci:${layoutDir}:1`, `docker://${berth.host}/alice/public:1`]);
      await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/alice/public:1`, `oci:${join(work, 'anon')}:1`]);
      const refused = await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/alice/private:1`, `oci:${join(work, 'refused')}:1`], { allowFailure: true });
      expect(refused.code).to.not.equal(0);
      expect(refused.stderr).to.match(/unauthorized|authentication required|denied/i);
    });

    it('is refused a push without credentials', async function () {
      const refused = await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layoutDir}:1`, `docker://${berth.host}/alice/public:2`], { allowFailure: true });
      expect(refused.code).to.not.equal(0);
      expect(refused.stderr).to.match(/unauthorized|authentication required|denied/i);
    });
  });

  describe('docker', function () {
    let engine: DockerEngine;
    let image: BusyboxImage;
    let ref: string;

    before(async function () {
      image = await busyboxImage('docker');
      engine = await startDockerd({ insecureRegistries: [berth.host] });
      ref = `${berth.host}/alice/docker:1`;
      await engine.docker(['load'], { input: await image.archive([ref]) });
    });

    after(() => engine?.stop());

    it('logs in, pushes to a private repository, pulls it back, and after logout is refused', async function () {
      const login = await engine.docker(['login', '--username', 'alice', '--password-stdin', berth.host], { input: Buffer.from(password) });
      expect(login.stdout).to.include('Login Succeeded');
      // docker keeps the refresh token Berth gave (offline_token=true), not the password; berth pull,
      // reading docker's config, asks its tokens with it.
      const kept = JSON.parse(readFileSync(join(engine.configDir, 'config.json'), 'utf8')).auths[berth.host];
      expect(kept.identitytoken, JSON.stringify(kept)).to.be.a('string');
      await engine.docker(['push', ref]);
      const home = clientHome();
      try {
        const pulled = await berthCli(home, ['pull', ref], { env: { DOCKER_CONFIG: engine.configDir } });
        expect(pulled.code, pulled.stderr).to.equal(0);
      } finally {
        removeDir(home);
      }
      await engine.docker(['rmi', ref]);
      await engine.docker(['pull', ref]);
      const ran = await engine.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'hello']);
      expect(ran.stdout.trim()).to.equal('hello');
      await engine.docker(['logout', berth.host]);
      await engine.docker(['rmi', ref]);
      const refused = await engine.docker(['pull', ref], { allowFailure: true });
      expect(refused.code).to.not.equal(0);
      expect(refused.stderr).to.match(/unauthorized|authentication required|denied|not exist/i);
    });

    it('refuses docker login with a wrong password', async function () {
      const login = await engine.docker(['login', '--username', 'alice', '--password-stdin', berth.host], { input: Buffer.from('wrong-password'), allowFailure: true });
      expect(login.code).to.not.equal(0);
    });
  });

  describe('podman', function () {
    let client: Podman;
    let ref: string;

    before(async function () {
      client = podmanSetup({ insecureRegistries: [berth.host] });
      ref = `${berth.host}/alice/podman:1`;
      const image = await busyboxImage('podman');
      await client.podman(['load', '--signature-policy', client.policy], { input: await image.archive([ref]) });
    });

    after(() => client?.cleanup());

    it('logs in, pushes to a private repository and pulls it back; without login the pull is refused', async function () {
      const authfile = join(work, 'podman-auth.json');
      const login = await client.podman(['login', '--authfile', authfile, '--username', 'alice', '--password-stdin', berth.host], { input: Buffer.from(password) });
      expect(login.stdout).to.include('Login Succeeded');
      await client.podman(['push', '--authfile', authfile, '--signature-policy', client.policy, ref]);
      await client.podman(['rmi', ref]);
      await client.podman(['pull', '--authfile', authfile, '--signature-policy', client.policy, ref]);
      await client.podman(['rmi', ref]);
      const refused = await client.podman(['pull', '--authfile', join(work, 'no-auth.json'), '--signature-policy', client.policy, ref], { allowFailure: true });
      expect(refused.code).to.not.equal(0);
    });
  });
});
