// The OCI runtime bundle `berth run` hands to the runtime: the process from the image config and the
// flags, as docker builds it, and the command line each runtime gets. This is also everything `run`
// checks where namespaces are forbidden (see run.test.ts).
import { expect } from 'chai';
import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { containerProcess, writeBundle } from '../../client/index.ts';
import { runtimeCommand } from '../../client/runtime.ts';
import { removeDir, tempDir } from '../helpers/clients.ts';

describe('client: runtime bundles', function () {
  let bundle: string;
  let rootfs: string;

  beforeEach(function () {
    bundle = tempDir('bundle');
    rootfs = join(bundle, 'rootfs');
    mkdirSync(join(rootfs, 'etc'), { recursive: true });
    writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n');
    writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\napp:x:1001:\nstaff:x:50:\n');
  });
  afterEach(function () {
    removeDir(bundle);
  });

  const image = { config: { Entrypoint: ['/entry'], Cmd: ['--serve'], Env: ['PATH=/bin', 'MODE=image'], WorkingDir: '/srv', User: 'app' } };

  it('joins Entrypoint and Cmd, and lets the command line replace Cmd and --entrypoint replace both', function () {
    expect(containerProcess(image, { command: [], env: [] }, rootfs).args).to.deep.equal(['/entry', '--serve']);
    expect(containerProcess(image, { command: ['--once'], env: [] }, rootfs).args).to.deep.equal(['/entry', '--once']);
    expect(containerProcess(image, { command: [], env: [], entrypoint: 'sh' }, rootfs).args).to.deep.equal(['sh']);
    expect(containerProcess(image, { command: ['-c', 'true'], env: [], entrypoint: 'sh' }, rootfs).args).to.deep.equal(['sh', '-c', 'true']);
    expect(containerProcess(image, { command: ['ls'], env: [], entrypoint: '' }, rootfs).args).to.deep.equal(['ls']);
    expect(() => containerProcess({ config: {} }, { command: [], env: [] }, rootfs)).to.throw(/no command/);
  });

  it('resolves User through the image\'s passwd and group files', function () {
    expect(containerProcess(image, { command: [], env: [] }, rootfs)).to.include({ uid: 1000, gid: 1001 });
    expect(containerProcess(image, { command: [], env: [], user: 'app:staff' }, rootfs)).to.include({ uid: 1000, gid: 50 });
    expect(containerProcess(image, { command: [], env: [], user: '4242:4343' }, rootfs)).to.include({ uid: 4242, gid: 4343 });
    expect(containerProcess({ config: { Cmd: ['x'] } }, { command: [], env: [] }, rootfs)).to.include({ uid: 0, gid: 0 });
    expect(() => containerProcess(image, { command: [], env: [], user: 'nobody' }, rootfs)).to.throw(/not in the image's \/etc\/passwd/);
  });

  it('merges Env with -e (KEY=VALUE, and KEY from this environment), and sets HOME from passwd', function () {
    process.env.BERTH_TEST_FROM_HOST = 'host value';
    try {
      const proc = containerProcess(image, { command: [], env: ['MODE=flag', 'BERTH_TEST_FROM_HOST', 'BERTH_TEST_UNSET'] }, rootfs);
      expect(proc.env).to.include.members(['PATH=/bin', 'MODE=flag', 'BERTH_TEST_FROM_HOST=host value', 'HOME=/home/app']);
      expect(proc.env.filter((e) => e.startsWith('MODE='))).to.have.length(1);
      expect(proc.env.some((e) => e.startsWith('BERTH_TEST_UNSET'))).to.equal(false);
    } finally {
      delete process.env.BERTH_TEST_FROM_HOST;
    }
    expect(containerProcess({ config: { Cmd: ['x'] } }, { command: [], env: [] }, rootfs).env).to.include(
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    );
  });

  it('writes config.json with the process, the root and the namespaces, and creates the working directory', function () {
    const proc = containerProcess(image, { command: [], env: [], workdir: '/data/work' }, rootfs);
    writeBundle(bundle, proc, 'c0ffee');
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
      ociVersion: string;
      process: { args: string[]; cwd: string; user: { uid: number; gid: number }; terminal: boolean };
      root: { path: string };
      hostname: string;
      mounts: Array<{ destination: string }>;
      linux: { namespaces: Array<{ type: string }> };
    };
    expect(spec.ociVersion).to.match(/^1\.0\./);
    expect(spec.process).to.deep.include({ args: ['/entry', '--serve'], cwd: '/data/work', user: { uid: 1000, gid: 1001 }, terminal: false });
    expect(spec.root.path).to.equal('rootfs');
    expect(spec.hostname).to.equal('c0ffee');
    expect(spec.mounts.map((m) => m.destination)).to.include.members(['/proc', '/dev', '/sys']);
    expect(spec.linux.namespaces.map((n) => n.type).sort()).to.deep.equal(['ipc', 'mount', 'pid', 'uts']);
    expect(statSync(join(rootfs, 'data', 'work')).isDirectory()).to.equal(true);
  });

  it('gives runc its bundle, and unshare the root, working directory, user and command', function () {
    const proc = containerProcess(image, { command: [], env: [] }, rootfs);
    const target = { dir: bundle, id: 'c0ffee', stateDir: '/run/berth-state', process: proc };
    expect(runtimeCommand({ name: 'runc', path: '/usr/sbin/runc' }, target)).to.deep.equal([
      '/usr/sbin/runc',
      '--root',
      '/run/berth-state',
      'run',
      '--bundle',
      bundle,
      'berth-c0ffee',
    ]);
    const unshare = runtimeCommand({ name: 'unshare', path: '/usr/bin/unshare' }, target);
    expect(unshare).to.include.members(['--mount', '--pid', '--fork', `--root=${rootfs}`, '--wd=/srv', '--setuid=1000', '--setgid=1001']);
    expect(unshare.slice(unshare.indexOf('--') + 1)).to.deep.equal(['/entry', '--serve']);
  });

  it('refuses a working directory that leads out of the root through a symlink', function () {
    symlinkSync('../../..', join(rootfs, 'up'));
    const proc = containerProcess(image, { command: [], env: [], workdir: '/up/x' }, rootfs);
    expect(() => writeBundle(bundle, proc, 'c0ffee')).to.throw(/outside the root/);
  });
});
