// Unpacking layers into a root filesystem on disk: every way out of the root is refused and the half-
// built root removed; whiteouts, absolute symlinks, hard links, zstd and the diff_id check.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { ClientError, PathEscapeError, UnpackLimitError, unpackLayers, type UnpackLimits } from '../../client/index.ts';
import { DigestMismatchError } from '../../client/errors.ts';
import { WHITEOUT_LAYERS } from '../helpers/berth-client.ts';
import { removeDir, tempDir } from '../helpers/clients.ts';
import { makeLayer, makeTar, sha256, type TarEntry } from '../helpers/oci-layout.ts';

/** Far above what these layers hold: the limits have their own tests. */
const LIMITS: UnpackLimits = { maxBytes: 1024 ** 3, maxEntries: 100_000 };

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
    'an absolute name': [[{ path: `/${'tmp'}/berth-unpack-absolute-${process.pid}`, content: 'x' }]],
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
    'a hard link with an absolute target': [[{ path: 'passwd', type: 'link', target: '/etc/passwd' }]],
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
      expect(existsSync(`/tmp/berth-unpack-absolute-${process.pid}`)).to.equal(false);
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
