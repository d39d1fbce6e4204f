// Unpacking layers into a root filesystem on disk: every way out of the root is refused and the half-
// built root removed; absolute and "./" names resolve inside the root; whiteouts, absolute symlinks, hard
// links, long names, device nodes and FIFOs (skipped and counted where not permitted), zstd and the diff_id.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { ClientError, PathEscapeError, UnpackLimitError, unpackLayers, type UnpackLimits } from '../../client/index.ts';
import { DigestMismatchError } from '../../client/errors.ts';
import { WHITEOUT_LAYERS } from '../helpers/berth-client.ts';
import { removeDir, tempDir } from '../helpers/clients.ts';
import { makeLayer, makeTar, sha256, type TarEntry } from '../helpers/oci-layout.ts';

/** Far above what these layers hold: the limits have their own tests. */
const LIMITS: UnpackLimits = { maxBytes: 1024 ** 3, maxEntries: 100_000 };

/** Linux's dev_t of a device number, as fs.Stats.rdev reports it. */
function makedev(major: number, minor: number): number {
  return ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12);
}

describe('client: unpacking layers', function () {
  let work: string;
  let count = 0;

  beforeEach(function () {
    work = tempDir('unpack');
  });
  afterEach(function () {
    removeDir(work);
  });

  /** Writes each layer (gzip) as a blob file; returns what unpackLayers takes. */
  async function layers(...entries: TarEntry[][]) {
    const out = [];
    for (const list of entries) {
      const layer = await makeLayer(list);
      const path = join(work, `layer-${count++}.tar.gz`);
      writeFileSync(path, layer.gz);
      out.push({ path, digest: layer.digest, diffId: layer.diffId });
    }
    return out;
  }

  // The root sits four folders deep in `work`, so a climb of up to four ".." would land in `work`.
  function rootIn(): string {
    return join(work, 'a', 'b', 'c', 'rootfs');
  }

  const ESCAPES: Record<string, TarEntry[][]> = {
    'a name with ..': [[{ path: '../../../../escaped', content: 'x' }]],
    'a name that climbs back out midway': [[{ path: 'etc/../../../../../escaped', content: 'x' }]],
    'an absolute name with ".." past the root': [[{ path: '/../../../../escaped', content: 'x' }]],
    'a "./" name with ".." past the root': [[{ path: './etc/../../../../../escaped', content: 'x' }]],
    'a file through a symlink that points out': [
      [{ path: 'out', type: 'symlink', target: '../../../..' }, { path: 'out/escaped', content: 'x' }],
    ],
    'a file through a chain of symlinks that ends outside': [
      [
        { path: 'one', type: 'symlink', target: 'two/..' },
        { path: 'two', type: 'symlink', target: 'three/../..' },
        { path: 'three/', type: 'directory' },
        { path: 'one/escaped', content: 'x' },
      ],
    ],
    'a symlink from a lower layer used by a higher one': [
      [{ path: 'usr/', type: 'directory' }, { path: 'usr/up', type: 'symlink', target: '../../../../..' }],
      [{ path: 'usr/up/escaped', content: 'x' }],
    ],
    'a directory through a symlink that points out': [
      [{ path: 'out', type: 'symlink', target: '../../../..' }, { path: 'out/escaped/', type: 'directory' }],
    ],
    'a hard link to a file outside': [[{ path: 'passwd', type: 'link', target: '../../../../outside.txt' }]],
    'a hard link with an absolute target past the root': [[{ path: 'passwd', type: 'link', target: '/../../../../outside.txt' }]],
    'a hard link through a symlink that points out': [
      [{ path: 'out', type: 'symlink', target: '../../../..' }, { path: 'passwd', type: 'link', target: 'out/outside.txt' }],
    ],
    'a whiteout through a symlink that points out': [
      [{ path: 'out', type: 'symlink', target: '../../../..' }, { path: 'out/.wh.outside.txt', content: '' }],
    ],
    // A whiteout names one entry of its own directory; anything else would remove the root or above it.
    'a whiteout of ".." (.wh...), which would remove the container folder': [[{ path: 'file', content: 'x' }, { path: '.wh...', content: '' }]],
    'a whiteout of "." (.wh..), which would remove the root': [[{ path: 'file', content: 'x' }, { path: '.wh..', content: '' }]],
    'a whiteout of nothing (.wh.), which would remove the root': [[{ path: 'file', content: 'x' }, { path: '.wh.', content: '' }]],
    'a whiteout of ".." below a folder (etc/.wh...), which would remove the root': [
      [{ path: 'etc/', type: 'directory' }, { path: 'etc/.wh...', content: '' }],
    ],
    'a whiteout of "." in a lower layer\'s folder': [[{ path: 'etc/', type: 'directory' }], [{ path: 'etc/.wh..', content: '' }]],
    'a whiteout name with a slash after the prefix (a folder)': [[{ path: 'etc/.wh.passwd/', type: 'directory' }]],
    'a whiteout name with a slash after the prefix (a path through it)': [[{ path: '.wh.etc/passwd', content: 'x' }]],
    'an opaque whiteout with a slash after it': [[{ path: 'etc/.wh..wh..opq/', type: 'directory' }]],
    // Read as written: a ".." that leaves the whiteout would otherwise make it a plain folder entry.
    'a whiteout name with ".." after it': [[{ path: 'etc/', type: 'directory' }, { path: 'etc/.wh.passwd/..', type: 'directory' }]],
    'an absolute whiteout of ".."': [[{ path: 'file', content: 'x' }, { path: '/.wh...', content: '' }]],
  };

  for (const [name, layerEntries] of Object.entries(ESCAPES)) {
    it(`refuses ${name}, and removes the half-built root`, async function () {
      writeFileSync(join(work, 'outside.txt'), 'the host\'s file\n');
      const root = rootIn();
      // The container's folder holds more than its root (config.json, container.json): it stays.
      const neighbour = join(root, '..', 'container.json');
      mkdirSync(join(root, '..'), { recursive: true });
      writeFileSync(neighbour, '{}\n');
      const error = await unpackLayers(await layers(...layerEntries), root, LIMITS).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error, 'the error').to.be.instanceOf(PathEscapeError);
      expect((error as Error).message).to.match(/layer \d \(sha256:[a-f0-9]{64}\): /);
      expect(existsSync(root), 'the root').to.equal(false);
      expect(readdirSync(work).sort()).to.include.members(['a', 'outside.txt']);
      expect(existsSync(join(work, 'escaped')), 'a file outside').to.equal(false);
      expect(readFileSync(join(work, 'outside.txt'), 'utf8')).to.equal('the host\'s file\n');
      expect(existsSync(neighbour), 'a file beside the root').to.equal(true);
    });
  }

  /** Unpacks layers (tar entry lists) into a fresh root; returns the root. */
  async function unpacked(...entries: TarEntry[][]): Promise<string> {
    const root = rootIn();
    await unpackLayers(await layers(...entries), root, LIMITS);
    return root;
  }

  it('resolves absolute symlinks inside the root, as the container sees them', async function () {
    const root = await unpacked([
      { path: 'etc/', type: 'directory' },
      { path: 'var/', type: 'directory' },
      { path: 'var/run', type: 'symlink', target: '/run' },
      { path: 'var/run/app.pid', content: '1\n' },
      { path: 'hosts', type: 'symlink', target: '/etc/hosts-in-image' },
    ]);
    expect(readFileSync(join(root, 'run', 'app.pid'), 'utf8')).to.equal('1\n');
    expect(readlinkSync(join(root, 'hosts'))).to.equal('/etc/hosts-in-image');
  });

  it('applies whiteouts and opaque directories (also below a directory the upper layer recreates)', async function () {
    const root = await unpacked(WHITEOUT_LAYERS.lower, WHITEOUT_LAYERS.upper);
    expect(readdirSync(join(root, 'opt'))).to.deep.equal(['keep']);
    expect(readdirSync(join(root, 'data')).sort()).to.deep.equal(['new', 'sub']);
    expect(readdirSync(join(root, 'data', 'sub'))).to.deep.equal(['new-2']);
  });

  it('keeps hard links inside the root', async function () {
    const root = await unpacked([{ path: 'keep', content: 'k' }], [{ path: 'hard', type: 'link', target: 'keep' }]);
    expect(lstatSync(join(root, 'hard')).ino).to.equal(lstatSync(join(root, 'keep')).ino);
  });

  it('resolves absolute names inside the root, as containerd and docker do ("/" is the root itself)', async function () {
    const host = `/tmp/berth-unpack-absolute-${process.pid}`;
    const root = await unpacked(
      [
        { path: '/', type: 'directory', mode: 0o700 },
        { path: '/bin/', type: 'directory' },
        { path: '/bin/sh', content: '#!sh\n', mode: 0o755 },
        { path: host, content: 'inside\n' },
        { path: '/etc/../etc/hosts', content: 'hosts\n' },
      ],
      [
        { path: '/bin/sh-link', type: 'link', target: '/bin/sh' },
        { path: '/bin/.wh.gone', content: '' },
        { path: '/.wh.etc', content: '' },
      ],
    );
    expect(readFileSync(join(root, 'bin', 'sh'), 'utf8')).to.equal('#!sh\n');
    expect(lstatSync(join(root, 'bin', 'sh-link')).ino, 'the hard link').to.equal(lstatSync(join(root, 'bin', 'sh')).ino);
    expect(readFileSync(join(root, host), 'utf8')).to.equal('inside\n');
    expect(existsSync(host), 'a file on the host').to.equal(false);
    expect(existsSync(join(root, 'etc')), 'whited out by an absolute name').to.equal(false);
    expect(statSync(root).mode & 0o777, 'the root keeps its own mode').to.equal(0o755);
  });

  describe('layers written by GNU tar: "./" names, long names, hard links, device nodes and FIFOs', function () {
    // 150 characters: longer than a tar header's name field (100), and no "/" to split it at (ustar prefix).
    const LONG = 'l'.repeat(150);
    const DEEP = `deep/${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(60)}/${'g'.repeat(60)}`;

    /** A source tree with every kind of entry, made with real files and real device nodes (the suite runs as root). */
    function sourceTree(): string {
      const src = join(work, 'src');
      mkdirSync(join(src, 'bin'), { recursive: true });
      writeFileSync(join(src, 'bin', 'tool'), 'the tool\n', { mode: 0o755 });
      linkSync(join(src, 'bin', 'tool'), join(src, 'bin', 'tool-hard'));
      writeFileSync(join(src, LONG), 'a long name\n');
      linkSync(join(src, LONG), join(src, `${LONG}-hard`));
      mkdirSync(join(src, DEEP), { recursive: true });
      writeFileSync(join(src, DEEP, 'file'), 'deep\n');
      symlinkSync(`/${DEEP}/file`, join(src, 'deep-link'));
      mkdirSync(join(src, 'nodes'));
      for (const [name, args] of [['null', ['c', '1', '3']], ['loop9', ['b', '7', '9']], ['fifo', ['p']]] as const) {
        const made = spawnSync('mknod', ['-m', '0640', join(src, 'nodes', name), ...args], { encoding: 'utf8' });
        expect(made.status, `mknod ${name}: ${made.stderr}`).to.equal(0);
      }
      return src;
    }

    /** `tar --format=FORMAT -C src -cf - .`: every name starts with "./", the first entry is "./" itself. */
    function gnuTarLayer(src: string, format: 'pax' | 'gnu') {
      const made = spawnSync('tar', [`--format=${format}`, '--numeric-owner', '-C', src, '-cf', '-', '.'], { maxBuffer: 64 * 1024 * 1024 });
      expect(made.status, String(made.stderr)).to.equal(0);
      const names = spawnSync('tar', ['-tf', '-'], { input: made.stdout, encoding: 'utf8' }).stdout.split('\n');
      expect(names[0]).to.equal('./');
      expect(names).to.include(`./${LONG}`);
      const gz = gzipSync(made.stdout);
      const path = join(work, `layer-${format}.tar.gz`);
      writeFileSync(path, gz);
      return { path, digest: sha256(gz), diffId: sha256(made.stdout) };
    }

    for (const format of ['pax', 'gnu'] as const) {
      it(`unpacks a ${format} layer as docker does, device nodes and FIFOs included (as root)`, async function () {
        const layer = gnuTarLayer(sourceTree(), format);
        const root = rootIn();
        const report = await unpackLayers([layer], root, LIMITS);
        expect(readFileSync(join(root, 'bin', 'tool'), 'utf8')).to.equal('the tool\n');
        expect(statSync(join(root, 'bin', 'tool')).mode & 0o777).to.equal(0o755);
        expect(lstatSync(join(root, 'bin', 'tool-hard')).ino, 'a hard link').to.equal(lstatSync(join(root, 'bin', 'tool')).ino);
        expect(readFileSync(join(root, LONG), 'utf8')).to.equal('a long name\n');
        expect(lstatSync(join(root, `${LONG}-hard`)).ino, 'a hard link to a long name').to.equal(lstatSync(join(root, LONG)).ino);
        expect(readFileSync(join(root, DEEP, 'file'), 'utf8')).to.equal('deep\n');
        expect(readlinkSync(join(root, 'deep-link'))).to.equal(`/${DEEP}/file`);
        const fifo = lstatSync(join(root, 'nodes', 'fifo'));
        expect(fifo.isFIFO(), 'the FIFO').to.equal(true);
        expect(fifo.mode & 0o777).to.equal(0o640);
        const chr = lstatSync(join(root, 'nodes', 'null'));
        expect(chr.isCharacterDevice(), 'the character device').to.equal(true);
        expect([chr.rdev, chr.mode & 0o777]).to.deep.equal([makedev(1, 3), 0o640]);
        const blk = lstatSync(join(root, 'nodes', 'loop9'));
        expect(blk.isBlockDevice(), 'the block device').to.equal(true);
        expect(blk.rdev).to.equal(makedev(7, 9));
        expect(report).to.deep.equal({ skippedNodes: 0 });
      });
    }

    it('skips the device nodes it may not make (in a user namespace), counts them, and makes the FIFO', async function () {
      const layer = gnuTarLayer(sourceTree(), 'pax');
      const root = rootIn();
      // The same unpackLayers, in a process whose root has no CAP_MKNOD in the machine's namespace.
      const script = `import { unpackLayers } from ${JSON.stringify(join(import.meta.dirname, '..', '..', 'client', 'index.ts'))};
        const report = await unpackLayers([${JSON.stringify(layer)}], ${JSON.stringify(root)}, ${JSON.stringify(LIMITS)});
        console.log(JSON.stringify(report));`;
      const result = spawnSync('unshare', ['--user', '--map-root-user', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
        encoding: 'utf8',
      });
      expect(result.status, result.stderr).to.equal(0);
      expect(JSON.parse(result.stdout)).to.deep.equal({ skippedNodes: 2 });
      expect(readdirSync(join(root, 'nodes'))).to.deep.equal(['fifo']);
      expect(lstatSync(join(root, 'nodes', 'fifo')).isFIFO()).to.equal(true);
      expect(readFileSync(join(root, LONG), 'utf8')).to.equal('a long name\n');
    });
  });

  it('unpacks a zstd layer', async function () {
    const tarBytes = await makeTar([{ path: 'hello.txt', content: 'from zstd\n' }]);
    const zstd = spawnSync('zstd', ['-q', '-c'], { input: tarBytes });
    expect(zstd.status, String(zstd.stderr)).to.equal(0);
    const path = join(work, 'layer.tar.zst');
    writeFileSync(path, zstd.stdout);
    const root = rootIn();
    await unpackLayers([{ path, digest: sha256(zstd.stdout), diffId: sha256(tarBytes) }], root, LIMITS);
    expect(readFileSync(join(root, 'hello.txt'), 'utf8')).to.equal('from zstd\n');
  });

  it('refuses a name with a NUL byte (a PAX path can hold one) as a layer error', async function () {
    const pack = tar.pack();
    pack.entry({ name: 'etc/passwd', pax: { path: 'etc/pass\0wd' } }, 'x');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    const path = join(work, 'nul.tar');
    writeFileSync(path, Buffer.concat(chunks));
    const root = rootIn();
    const error = await unpackLayers([{ path, digest: sha256('nul') }], root, LIMITS).catch((err: unknown) => err);
    expect(error).to.be.instanceOf(ClientError);
    expect((error as Error).message).to.include('a NUL byte');
    expect(existsSync(root)).to.equal(false);
  });

  describe('a layer that ends early (as `umoci insert` writes them)', function () {
    /** A tar of `dir/` and a file of `size` bytes, cut to its first `bytes` bytes, as a plain-tar layer. */
    async function cutLayer(size: number, keep: (fileEnd: number) => number) {
      const full = await makeTar([{ path: 'dir/', type: 'directory' }, { path: 'dir/file', content: Buffer.alloc(size, 'x') }]);
      const cut = full.subarray(0, keep(1024 + size)); // after the headers of dir/ and dir/file
      const path = join(work, `cut-${count++}.tar`);
      writeFileSync(path, cut);
      return { path, digest: sha256(cut), diffId: sha256(cut) };
    }

    it('unpacks one that ends right after the last file\'s content, without padding or end blocks, as docker does', async function () {
      const root = rootIn();
      await unpackLayers([await cutLayer(700, (end) => end)], root, LIMITS);
      expect(readFileSync(join(root, 'dir', 'file'), 'utf8')).to.equal('x'.repeat(700));
    });

    it('unpacks one that ends inside the last file\'s padding', async function () {
      const root = rootIn();
      await unpackLayers([await cutLayer(700, (end) => end + 100)], root, LIMITS);
      expect(readFileSync(join(root, 'dir', 'file'), 'utf8')).to.equal('x'.repeat(700));
    });

    for (const [name, keep, message] of [
      ['inside the last file\'s content, where padding zeros would complete it', (end: number) => end - 200, 'the layer ends inside the content of "dir/file"'],
      ['inside the last file\'s content, more than a block short', (end: number) => end - 650, 'Unexpected end of data'],
    ] as const) {
      it(`refuses one that ends ${name}, and removes the half-built root`, async function () {
        const root = rootIn();
        const error = await unpackLayers([await cutLayer(1000, keep)], root, LIMITS).catch((err: unknown) => err);
        expect(error).to.be.instanceOf(ClientError);
        expect((error as Error).message).to.match(/^layer 1 \(sha256:[a-f0-9]{64}\): /).and.to.have.string(message);
        expect(existsSync(root), 'the root').to.equal(false);
      });
    }
  });

  it('refuses a layer whose content is not the config\'s diff_id', async function () {
    const [layer] = await layers([{ path: 'file', content: 'x' }]);
    const root = rootIn();
    mkdirSync(root, { recursive: true });
    const error = await unpackLayers([{ ...layer!, diffId: sha256('something else') }], root, LIMITS).catch((err: unknown) => err);
    expect(error).to.be.instanceOf(DigestMismatchError);
    expect(existsSync(root)).to.equal(false);
  });

  describe('limits per image', function () {
    /** A layer's tar entries `name-1`…`name-n`, each a small file. */
    const files = (name: string, n: number): TarEntry[] => Array.from({ length: n }, (_, i) => ({ path: `${name}-${i + 1}`, content: 'x' }));
    // After the limit, an entry that climbs out: an unpack that went on past the limit would meet it.
    const escape: TarEntry = { path: '../../../../escaped', content: 'x' };

    it('stops a small layer that expands past the byte limit as soon as it passes it, and keeps nothing', async function () {
      const [layer] = await layers([{ path: 'zeros', content: Buffer.alloc(16 * 1024 * 1024) }, escape]);
      expect(statSync(layer!.path).size, 'the compressed layer').to.be.below(64 * 1024);
      const root = rootIn();
      const error = await unpackLayers([layer!], root, { maxBytes: 1024 * 1024, maxEntries: 100 }).catch((err: unknown) => err);
      expect(error).to.be.instanceOf(UnpackLimitError);
      expect((error as Error).message).to.equal(
        `layer 1 (${layer!.digest}): the image unpacks to more than its limit of 1048576 bytes (BERTH_UNPACK_MAX_BYTES); nothing of it was kept`,
      );
      expect(existsSync(root), 'the root').to.equal(false);
      expect(existsSync(join(work, 'escaped'))).to.equal(false);
    });

    it('counts the entries of all layers together and stops at the limit', async function () {
      const image = await layers(files('lower', 6), [...files('upper', 6), escape]);
      const root = rootIn();
      const error = await unpackLayers(image, root, { maxBytes: 1024 ** 3, maxEntries: 10 }).catch((err: unknown) => err);
      expect(error).to.be.instanceOf(UnpackLimitError);
      expect((error as Error).message).to.equal(
        `layer 2 (${image[1]!.digest}): the image unpacks to more than its limit of 10 entries (BERTH_UNPACK_MAX_ENTRIES); nothing of it was kept`,
      );
      expect(existsSync(root), 'the root').to.equal(false);
    });

    it('unpacks an image that reaches its limits exactly', async function () {
      const lower = await makeLayer(files('lower', 6));
      const upper = await makeLayer(files('upper', 4));
      const image = await layers(files('lower', 6), files('upper', 4));
      const root = rootIn();
      await unpackLayers(image, root, { maxBytes: lower.tar.length + upper.tar.length, maxEntries: 10 });
      expect(readdirSync(root)).to.have.length(10);
    });

    for (const algorithm of ['md5', 'sha1', 'sha384']) {
      it(`refuses a diff_id in ${algorithm}, which the image spec does not allow, before writing anything`, async function () {
        const layer = await makeLayer([{ path: 'file', content: 'x' }]);
        const [blob] = await layers([{ path: 'file', content: 'x' }]);
        const diffId = `${algorithm}:${createHash(algorithm).update(layer.tar).digest('hex')}`;
        const root = rootIn();
        const error = await unpackLayers([{ ...blob!, diffId }], root, LIMITS).catch((err: unknown) => err);
        expect(error).to.be.instanceOf(DigestMismatchError);
        expect((error as Error).message).to.equal(`layer 1 (${blob!.digest}): diff_id: "${diffId}" is not a sha256 or sha512 digest`);
        expect(existsSync(root), 'the root').to.equal(false);
      });
    }

    it('accepts a sha512 diff_id', async function () {
      const layer = await makeLayer([{ path: 'file', content: 'sha512\n' }]);
      const [blob] = await layers([{ path: 'file', content: 'sha512\n' }]);
      const root = rootIn();
      await unpackLayers([{ ...blob!, diffId: `sha512:${createHash('sha512').update(layer.tar).digest('hex')}` }], root, LIMITS);
      expect(readFileSync(join(root, 'file'), 'utf8')).to.equal('sha512\n');
    });
  });
});
