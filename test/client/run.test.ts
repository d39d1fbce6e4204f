// berth pull and berth run against a real Berth: a busybox image pushed with skopeo is pulled into a
// local store and run with the installed runtime (runc here), and with the unshare + chroot fallback.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { requestsSince } from '../helpers/berth-requests.ts';
import { addImage, berthCli, CAN_RUN, clientHome, filesIn } from '../helpers/berth-client.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { gzip, hostArchitecture, jsonBytes, makeLayer, OciLayout, sha256, type Descriptor } from '../helpers/oci-layout.ts';

// Containers need namespaces; where the environment forbids them (CAN_RUN), the tests that run containers
// give way to one that checks everything up to the runtime: the bundle berth run writes (and bundle.test.ts).
const HAS_RUNC = spawnSync('runc', ['--version']).status === 0;

describe('client: berth pull and berth run', function () {
  this.timeout(120_000);

  let berth: TestBerth;
  let skopeo: Skopeo;
  let work: string;
  let home: string;
  let busybox: BusyboxImage;
  let layout: OciLayout;

  async function push(tag: string, manifest: Descriptor, repo: string): Promise<string> {
    layout.writeIndexJson({ [tag]: manifest });
    await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layout.dir}:${tag}`, `docker://${berth.host}/${repo}:${tag}`]);
    return `${berth.host}/${repo}:${tag}`;
  }

  before(async function () {
    berth = await startBerth();
    skopeo = new Skopeo();
    work = tempDir('client');
    home = clientHome();
    busybox = await busyboxImage('client');
    layout = new OciLayout(join(work, 'layout'));
  });

  after(async function () {
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
    if (home) removeDir(home);
  });

  describe('a busybox image', function () {
    let image: string;

    before(async function () {
      const manifest = addImage(layout, [busybox.layer], {
        architecture: hostArchitecture(),
        os: 'linux',
        config: { Env: ['PATH=/bin', 'GREETING=from the image'], Cmd: ['sh', '-c', 'echo default command'], WorkingDir: '/srv/app' },
      });
      image = await push('1.0', manifest, 'client/busybox');
    });

    it('is pulled into the store: every blob under its digest, the image listed by berth images', async function () {
      const pulled = await berthCli(home, ['pull', image]);
      expect(pulled.code, pulled.stderr).to.equal(0);
      expect(pulled.stderr).to.match(/Digest: sha256:[a-f0-9]{64}/);
      expect(filesIn(home, 'blobs/sha256')).to.include(busybox.layer.digest.slice(7));
      expect(filesIn(home, 'downloads')).to.deep.equal([]);

      const images = await berthCli(home, ['images']);
      expect(images.code).to.equal(0);
      const lines = images.stdout.trim().split('\n');
      expect(lines[0]).to.match(/^REPOSITORY\s+TAG\s+IMAGE ID\s+PLATFORM\s+SIZE$/);
      expect(lines.some((l) => l.startsWith(`${berth.host}/client/busybox`) && l.includes('1.0') && l.includes(`linux/${hostArchitecture()}`))).to.equal(true);
    });

    if (CAN_RUN) {
      it('runs `echo hello` and prints hello', async function () {
        const result = await berthCli(home, ['run', '--rm', image, 'echo', 'hello']);
        expect(result.stderr).to.not.match(/berth:/);
        expect(result.stdout).to.equal('hello\n');
        expect(result.code).to.equal(0);
        expect(filesIn(home, 'containers'), '--rm removed the container').to.deep.equal([]);
      });

      it('runs the image\'s Cmd in its WorkingDir when no command is given', async function () {
        const result = await berthCli(home, ['run', '--rm', image]);
        expect(result.stdout).to.equal('default command\n');
        const pwd = await berthCli(home, ['run', '--rm', image, 'sh', '-c', 'pwd']);
        expect(pwd.stdout).to.equal('/srv/app\n');
      });

      it('passes the container\'s exit code through', async function () {
        for (const code of [0, 3, 42]) {
          const result = await berthCli(home, ['run', '--rm', image, 'sh', '-c', `exit ${code}`]);
          expect(result.code, `exit ${code}`).to.equal(code);
        }
        const missing = await berthCli(home, ['run', '--rm', image, '/no/such/program']);
        expect(missing.code).to.not.equal(0);
      });

      it('applies -e and -w, and the image\'s Env', async function () {
        const result = await berthCli(home, [
          'run',
          '--rm',
          '-e',
          'NAME=berth',
          '-e',
          'FROM_HOST',
          '-w',
          '/tmp/work',
          image,
          'sh',
          '-c',
          'echo "$NAME|$GREETING|$FROM_HOST|$(pwd)"',
        ], { env: { FROM_HOST: 'passed through' } });
        expect(result.stdout).to.equal('berth|from the image|passed through|/tmp/work\n');
        expect(result.code).to.equal(0);
      });

      it('takes --entrypoint, and passes stdin through', async function () {
        const result = await berthCli(home, ['run', '--rm', '--entrypoint', 'cat', image], { input: Buffer.from('through stdin\n') });
        expect(result.stdout).to.equal('through stdin\n');
        expect(result.code).to.equal(0);
      });

      it('keeps the container (bundle and rootfs) without --rm', async function () {
        const result = await berthCli(home, ['run', image, 'true']);
        expect(result.code).to.equal(0);
        const containers = filesIn(home, 'containers');
        expect(containers).to.have.length(1);
        const bundle = join(home, 'containers', containers[0]!);
        const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
          process: { args: string[]; env: string[]; cwd: string; user: { uid: number } };
          root: { path: string };
        };
        expect(spec.process.args).to.deep.equal(['true']);
        expect(spec.process.cwd).to.equal('/srv/app');
        expect(spec.process.env).to.include('GREETING=from the image');
        expect(spec.root.path).to.equal('rootfs');
        expect(statSync(join(bundle, 'rootfs', 'bin', 'busybox')).isFile()).to.equal(true);

        // berth ps lists it with its exit code; berth rm (by a prefix of its ID) removes it.
        const failed = await berthCli(home, ['run', image, 'sh', '-c', 'exit 3']);
        expect(failed.code).to.equal(3);
        await berthCli(home, ['run', '--rm', image, 'true']);
        const ps = (await berthCli(home, ['ps', '-a'])).stdout.trim().split('\n');
        expect(ps[0]).to.match(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS$/);
        expect(ps).to.have.length(3); // the --rm run left nothing
        const [newest, oldest] = [ps[1]!.split(/\s{3,}/), ps[2]!.split(/\s{3,}/)];
        expect(oldest[0]).to.equal(containers[0]);
        expect(newest[1]).to.equal(image);
        expect(newest[2]).to.equal('"sh -c exit 3"');
        expect(newest[4]).to.match(/^Exited \(3\) \d+ seconds? ago$/);
        expect(oldest[4]).to.match(/^Exited \(0\) /);
        const removed = await berthCli(home, ['rm', oldest[0]!.slice(0, 5), newest[0]!]);
        expect(removed.code, removed.stderr).to.equal(0);
        expect(removed.stdout.trim().split('\n')).to.deep.equal([oldest[0], newest[0]]);
        expect(filesIn(home, 'containers')).to.deep.equal([]);
        const unknown = await berthCli(home, ['rm', 'abcdef']);
        expect(unknown.code).to.equal(1);
        expect(unknown.stderr).to.include('no such container: abcdef');
      });

      it('runs with the unshare + chroot fallback too', async function () {
        const result = await berthCli(home, ['run', '--rm', '-w', '/tmp', image, 'sh', '-c', 'echo "$GREETING in $(pwd) as $(id -u)"; exit 5'], {
          env: { BERTH_RUNTIME: 'unshare' },
        });
        expect(result.stdout).to.equal('from the image in /tmp as 0\n');
        expect(result.code).to.equal(5);
      });

      it('runs with runc when it is installed', function () {
        if (!HAS_RUNC) throw new Error('runc is missing: .ci/run installs it');
        return berthCli(home, ['run', '--rm', image, 'busybox', 'hostname']).then((result) => {
          // runc sets the hostname of config.json (the container id); unshare would keep the host's.
          expect(result.stdout).to.match(/^[a-f0-9]{12}\n$/);
        });
      });
    } else {
      it('checks the bundle only: this environment forbids namespaces', async function () {
        console.log('      (namespaces are forbidden here: no container runs; the bundle berth run writes is checked)');
        const result = await berthCli(home, ['run', '-e', 'NAME=berth', '-w', '/tmp', image, 'echo', 'hello']);
        expect(result.code).to.not.equal(0);
        const containers = filesIn(home, 'containers');
        expect(containers).to.have.length(1);
        const bundle = join(home, 'containers', containers[0]!);
        const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
          process: { args: string[]; env: string[]; cwd: string };
        };
        expect(spec.process.args).to.deep.equal(['echo', 'hello']);
        expect(spec.process.env).to.include.members(['NAME=berth', 'GREETING=from the image']);
        expect(spec.process.cwd).to.equal('/tmp');
        expect(statSync(join(bundle, 'rootfs', 'bin', 'busybox')).isFile()).to.equal(true);

        removeDir(bundle);
      });
    }

    it('pulls nothing the second time', async function () {
      const mark = berth.logs.length;
      const again = await berthCli(home, ['pull', image]);
      expect(again.code, again.stderr).to.equal(0);
      expect(again.stderr).to.match(/already present/);
      const blobGets = requestsSince(berth, mark).filter((r) => r.route === 'blob' && r.method === 'GET');
      expect(blobGets, 'blob GETs of the second pull').to.deep.equal([]);
    });

    it('removes the image with berth rmi, and the blobs no other image uses', async function () {
      const other = clientHome();
      try {
        expect((await berthCli(other, ['pull', image])).code).to.equal(0);
        const rmi = await berthCli(other, ['rmi', image]);
        expect(rmi.code, rmi.stderr).to.equal(0);
        expect(rmi.stdout).to.include(`Untagged: ${image}`);
        expect(rmi.stdout).to.include(`Deleted: ${busybox.layer.digest}`);
        expect(filesIn(other, 'blobs/sha256')).to.deep.equal([]);
        expect((await berthCli(other, ['images'])).stdout.trim().split('\n')).to.have.length(1);
        const again = await berthCli(other, ['rmi', image]);
        expect(again.code).to.equal(1);
        expect(again.stderr).to.match(/no such image/);
      } finally {
        removeDir(other);
      }
    });
  });

  it('refuses a layer that would write outside the root, and removes the half-built container (even without --rm)', async function () {
    const escape = await makeLayer([{ path: '../../../../../../../../tmp/berth-escaped', content: 'out\n' }]);
    const manifest = addImage(layout, [busybox.layer, escape], { architecture: hostArchitecture(), os: 'linux', config: { Cmd: ['true'] } });
    const image = await push('escape', manifest, 'client/escape');
    const result = await berthCli(home, ['run', image]);
    expect(result.code).to.equal(125);
    expect(result.stderr).to.match(/climbs out with "\.\."/);
    expect(existsSync('/tmp/berth-escaped')).to.equal(false);
    expect(filesIn(home, 'containers')).to.deep.equal([]);
  });

  it('skips the device nodes it may not make (a user namespace) with one warning line that counts them', async function () {
    const nodes = join(work, 'nodes');
    mkdirSync(join(nodes, 'srv'), { recursive: true });
    for (const [name, args] of [['null', ['c', '1', '3']], ['zero', ['c', '1', '5']], ['loop9', ['b', '7', '9']], ['fifo', ['p']]] as const) {
      const made = spawnSync('mknod', [join(nodes, 'srv', name), ...args], { encoding: 'utf8' });
      expect(made.status, `mknod ${name}: ${made.stderr}`).to.equal(0);
    }
    const tarBytes = spawnSync('tar', ['--format=pax', '-C', nodes, '-cf', '-', '.']).stdout;
    const gz = gzip(tarBytes);
    const layer = { tar: tarBytes, diffId: sha256(tarBytes), gz, digest: sha256(gz) };
    const manifest = addImage(layout, [busybox.layer, layer], { architecture: hostArchitecture(), os: 'linux', config: { Cmd: ['ls', '/srv'] } });
    const image = await push('nodes', manifest, 'client/nodes');
    // A fresh store: the pull runs in the namespace too. The container itself cannot start there (unshare may
    // not call setgroups in it), so the rootfs berth run built, kept without --rm, is looked at instead.
    const inNamespace = clientHome();
    try {
      const result = await berthCli(inNamespace, ['run', image], { within: ['unshare', '--user', '--map-root-user'], env: { BERTH_RUNTIME: 'unshare' } });
      const warnings = result.stderr.split('\n').filter((line) => line.startsWith('berth:'));
      expect(warnings, result.stderr).to.deep.equal(['berth: warning: skipped 3 device nodes and FIFOs of the image: making them is not permitted here']);
      const [container] = filesIn(inNamespace, 'containers');
      expect(readdirSync(join(inNamespace, 'containers', container!, 'rootfs', 'srv')), 'the FIFO is made').to.deep.equal(['fifo']);
    } finally {
      removeDir(inNamespace);
    }
  });

  it('stops an image that unpacks past BERTH_UNPACK_MAX_BYTES, names the limit and keeps no container', async function () {
    // 64 MiB of zeros: a layer of about 64 KiB.
    const bomb = await makeLayer([{ path: 'zeros', content: Buffer.alloc(64 * 1024 * 1024) }]);
    const manifest = addImage(layout, [busybox.layer, bomb], { architecture: hostArchitecture(), os: 'linux', config: { Cmd: ['true'] } });
    const image = await push('bomb', manifest, 'client/bomb');
    const limit = busybox.layer.tar.length + 1024 * 1024;
    const result = await berthCli(home, ['run', image], { env: { BERTH_UNPACK_MAX_BYTES: String(limit) } });
    expect(result.code, result.stderr).to.equal(125);
    expect(result.stderr).to.include(
      `berth: layer 2 (${bomb.digest}): the image unpacks to more than its limit of ${limit} bytes (BERTH_UNPACK_MAX_BYTES); nothing of it was kept`,
    );
    expect(filesIn(home, 'containers')).to.deep.equal([]);
  });

  it('refuses an image whose config lists fewer diff_ids than it has layers (a layer would go unchecked)', async function () {
    const extra = await makeLayer([{ path: 'unchecked', content: 'x' }]);
    const config = { architecture: hostArchitecture(), os: 'linux', config: { Cmd: ['true'] }, rootfs: { type: 'layers', diff_ids: [busybox.layer.diffId] } };
    const manifest = layout.addManifest(jsonBytes(config), [busybox.layer, extra]);
    const image = await push('short-diff-ids', manifest, 'client/short-diff-ids');
    const result = await berthCli(home, ['run', image]);
    expect(result.code, result.stderr).to.equal(125);
    expect(result.stderr).to.include(`${image}: the config lists 1 diff_ids for 2 layers`);
    expect(filesIn(home, 'containers')).to.deep.equal([]);
  });
});
