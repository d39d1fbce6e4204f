// Images as real tools build them, pushed to a real Berth, and run both with `berth run` and with `docker
// run` (pulled from the same Berth): the two must print the same. umoci writes "/" as an entry name and
// ends `umoci insert` layers without padding; buildah and docker write hard links, PAX long names, device
// nodes and FIFOs. Every image holds the same files, checked by one command.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { berthCli, CAN_RUN, clientHome } from '../helpers/berth-client.ts';
import { BUSYBOX_PATH } from '../helpers/busybox.ts';
import { removeDir, run, Skopeo, startDockerd, tempDir, type DockerEngine } from '../helpers/clients.ts';

/** A name longer than a tar header holds (100) with no "/" to split it at: only PAX (or GNU) can carry it. */
const LONG = `a-long-name-${'x'.repeat(140)}`;
const APPLETS = ['sh', 'cat', 'stat', 'ls', 'mknod', 'mkfifo', 'ln'];

/** What the check prints in a container of any of these images. */
const EXPECTED = [
  '/srv/fifo|fifo|0:0|1',
  '/srv/null|character special file|1:3|1',
  '/srv/hello|regular file|0:0|2',
  '/srv/hard|regular file|0:0|2',
  `/srv/${LONG}|regular file|0:0|1`,
  'hello from the image',
  'a long name',
  '',
].join('\n');
const CHECK = ['sh', '-c', `stat -c '%n|%F|%t:%T|%h' /srv/fifo /srv/null /srv/hello /srv/hard /srv/${LONG} && cat /srv/hello /srv/${LONG}`];

/**
 * A root filesystem: busybox and its applets, and in /srv the entries CHECK looks at; without `special`
 * only the long name (a docker build makes the rest in a RUN step).
 */
function rootfs(dir: string, special: boolean): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  mkdirSync(join(dir, 'srv'));
  writeFileSync(join(dir, 'bin', 'busybox'), readFileSync(BUSYBOX_PATH), { mode: 0o755 });
  for (const applet of APPLETS) symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(join(dir, 'srv', LONG), 'a long name\n');
  if (special) {
    writeFileSync(join(dir, 'srv', 'hello'), 'hello from the image\n');
    linkSync(join(dir, 'srv', 'hello'), join(dir, 'srv', 'hard'));
    for (const [name, args] of [['fifo', ['p']], ['null', ['c', '1', '3']]] as const) {
      const made = spawnSync('mknod', [join(dir, 'srv', name), ...args], { encoding: 'utf8' });
      if (made.status !== 0) throw new Error(`mknod ${name}: ${made.stderr}`);
    }
  }
  return dir;
}

describe('e2e: images built by umoci, buildah and docker build run with berth run as with docker run', function () {
  this.timeout(300_000);

  let berth: TestBerth;
  let engine: DockerEngine;
  let skopeo: Skopeo;
  let work: string;
  let home: string;

  before(async function () {
    berth = await startBerth();
    work = tempDir('built-images');
    home = clientHome();
    skopeo = new Skopeo();
    engine = await startDockerd({ insecureRegistries: [berth.host] });
  });

  after(async function () {
    await engine?.stop();
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
    if (home) removeDir(home);
  });

  /** CHECK's output in `berth run` (its stderr must hold no warning: root makes every node) and in `docker run`. */
  async function runBoth(image: string): Promise<{ berth: string; docker: string }> {
    const ran = await berthCli(home, ['run', '--rm', image, ...CHECK]);
    expect(ran.stderr, 'berth run stderr').to.not.match(/berth:/);
    expect(ran.code, ran.stderr).to.equal(0);
    // What docker runs from Berth's copy, not from the engine's own (docker build keeps one).
    await engine.docker(['rmi', image], { allowFailure: true });
    await engine.docker(['pull', image]);
    const docker = await engine.docker(['run', '--rm', '--network', 'none', image, ...CHECK]);
    return { berth: ran.stdout, docker: docker.stdout };
  }

  it('umoci: a "/" entry, layers without padding (umoci insert), a whiteout, and the special files', async function () {
    if (!CAN_RUN) throw new Error('containers cannot run here (no namespaces)');
    const layout = join(work, 'umoci');
    const umoci = (args: string[]) => run('umoci', args, { timeoutMs: 120_000 });
    await umoci(['init', '--layout', layout]);
    await umoci(['new', '--image', `${layout}:1`]);
    // `umoci insert DIR /` writes the root itself as "/": the entry berth run used to refuse.
    await umoci(['insert', '--image', `${layout}:1`, rootfs(join(work, 'umoci-rootfs'), true), '/']);
    writeFileSync(join(work, 'gone'), 'whited out\n');
    await umoci(['insert', '--image', `${layout}:1`, join(work, 'gone'), '/srv/gone']);
    await umoci(['insert', '--image', `${layout}:1`, '--whiteout', '/srv/gone']);
    await umoci(['config', '--image', `${layout}:1`, '--config.cmd', 'sh']);
    const tars = await layerTars(layout);
    expect(tars[0]!.names, 'the first layer names the root "/"').to.include('/');
    expect(tars.some((t) => t.bytes % 512 !== 0), 'a layer ends without padding').to.equal(true);

    const image = `${berth.host}/e2e/umoci:1`;
    await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layout}:1`, `docker://${image}`]);
    const out = await runBoth(image);
    expect(out.berth).to.equal(EXPECTED);
    expect(out.docker).to.equal(out.berth);
    const gone = await berthCli(home, ['run', '--rm', image, 'ls', '/srv']);
    expect(gone.stdout.split('\n')).to.not.include('gone');
  });

  it('buildah: from scratch, the root filesystem copied in, committed and pushed', async function () {
    if (!CAN_RUN) throw new Error('containers cannot run here (no namespaces)');
    const dir = join(work, 'buildah');
    mkdirSync(dir);
    writeFileSync(join(dir, 'storage.conf'), `[storage]\ndriver = "vfs"\nrunroot = "${join(dir, 'run')}"\ngraphroot = "${join(dir, 'storage')}"\n`);
    writeFileSync(join(dir, 'registries.conf'), `unqualified-search-registries = []\n[[registry]]\nlocation = "${berth.host}"\ninsecure = true\n`);
    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const env = { ...process.env, CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'), CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf') };
    const policy = ['--signature-policy', join(dir, 'policy.json')];
    const buildah = (args: string[]) => run('buildah', args, { env, timeoutMs: 120_000 });
    const image = `${berth.host}/e2e/buildah:1`;
    try {
      const container = (await buildah(['from', ...policy, 'scratch'])).stdout.trim();
      await buildah(['copy', container, rootfs(join(work, 'buildah-rootfs'), true), '/']);
      await buildah(['config', '--cmd', 'sh', container]);
      await buildah(['commit', ...policy, container, image]);
      await buildah(['push', ...policy, '--tls-verify=false', image]);
    } finally {
      await run('buildah', ['rm', '--all'], { env, allowFailure: true });
      await run('buildah', ['rmi', '--all', '--force'], { env, allowFailure: true });
    }
    const out = await runBoth(image);
    expect(out.berth).to.equal(EXPECTED);
    expect(out.docker).to.equal(out.berth);
  });

  // The file and its hard link in one step: a layer holds a hard link only to a file of its own (docker's
  // diff of a later step would hold a copy, and docker run would show two files).
  it('docker build: COPY and RUN (the file, its hard link, the FIFO and the device node made in a RUN step), pushed', async function () {
    if (!CAN_RUN) throw new Error('containers cannot run here (no namespaces)');
    const context = join(work, 'docker-context');
    rootfs(join(context, 'rootfs'), false);
    writeFileSync(
      join(context, 'Dockerfile'),
      [
        'FROM scratch',
        'COPY rootfs/ /',
        `RUN ["/bin/sh", "-c", "echo 'hello from the image' >/srv/hello && ln /srv/hello /srv/hard && mkfifo /srv/fifo && mknod /srv/null c 1 3"]`,
        'CMD ["sh"]',
        '',
      ].join('\n'),
    );
    const image = `${berth.host}/e2e/docker-build:1`;
    // The classic builder: this docker client has no buildx plugin, and the engine builds without one.
    await engine.docker(['build', '--network', 'none', '-t', image, context], { env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 180_000 });
    await engine.docker(['push', image]);
    const out = await runBoth(image);
    expect(out.berth).to.equal(EXPECTED);
    expect(out.docker).to.equal(out.berth);
  });
});

/** Each layer of the only image of an OCI layout: the names in its tar and the tar's length in bytes. */
async function layerTars(layout: string): Promise<Array<{ names: string[]; bytes: number }>> {
  const blob = (digest: string) => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string }> };
  const out = [];
  for (const layer of manifest.layers) {
    const tarBytes = spawnSync('gzip', ['-dc', blob(layer.digest)], { maxBuffer: 64 * 1024 * 1024 }).stdout;
    // GNU tar lists what it can of a layer without end blocks, then complains: the names are what counts.
    const names = spawnSync('tar', ['-tPf', '-'], { input: tarBytes, encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    out.push({ names, bytes: tarBytes.length });
  }
  return out;
}
