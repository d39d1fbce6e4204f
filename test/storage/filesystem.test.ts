import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { utimesSync } from 'node:fs';
import { createServer } from 'node:net';
import { Readable } from 'node:stream';
import { directIO, FilesystemDriver, SlabPool, WritePathChooser } from '../../storage/index.ts';
import { describeStorageDriver } from './driver-contract.ts';

describeStorageDriver('filesystem', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-driver-'));
  return {
    driver: new FilesystemDriver(root),
    reopen: () => new FilesystemDriver(root),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

// BERTH_DIRECT_IO: whole slabs of a large write go to the device directly; the same contract holds.
describeStorageDriver('filesystem, direct I/O', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-driver-'));
  return {
    driver: new FilesystemDriver(root, { directIO: true }),
    reopen: () => new FilesystemDriver(root, { directIO: true }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe('filesystem driver: direct I/O', () => {
  /** Writes 5 MiB and 100 bytes (10 bytes first) through a new driver; the bytes written directly. */
  async function largeWrite(options: { directIO?: boolean }): Promise<number> {
    const root = await mkdtemp(join(tmpdir(), 'berth-fs-direct-'));
    try {
      const driver = new FilesystemDriver(root, options);
      const before = directIO.bytesWritten;
      const writer = await driver.writer('/blob', false);
      const data = Buffer.alloc(5 * 1024 * 1024 + 100, 7);
      await writer.write(Readable.from([data.subarray(0, 10), data.subarray(10)]));
      await writer.commit();
      await writer.close();
      expect((await driver.getContent('/blob'))!.equals(data)).to.equal(true);
      return directIO.bytesWritten - before;
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }

  it('with directIO, writes whole slabs of a large write straight to the device; its first MiB and the unaligned rest through the page cache', async () => {
    // 10 bytes first, so the direct part starts at a block past the first MiB and ends at the last whole slab.
    const direct = await largeWrite({ directIO: true });
    expect(directIO.enabled, 'this machine\'s filesystem takes direct I/O').to.equal(true);
    expect(direct % 4096).to.equal(0);
    expect(direct).to.be.within(2 * 1024 * 1024, 4 * 1024 * 1024);
  });

  it('by default (to the driver), and where the filesystem refused direct I/O, writes everything through the page cache', async () => {
    expect(await largeWrite({})).to.equal(0);
    directIO.enabled = false;
    try {
      expect(await largeWrite({ directIO: true })).to.equal(0);
    } finally {
      directIO.enabled = true;
    }
  });
});

describe('filesystem driver: direct I/O chosen by what the page cache costs (auto)', () => {
  const MiB = 1024 * 1024;
  /** A clock and a kernel-CPU counter the test moves. */
  function host() {
    const h = { ms: 0, kernelMs: 0 };
    return { h, chooser: new WritePathChooser(() => h.ms, () => h.kernelMs) };
  }
  /** Sends `mib` MiB of large writes through the chooser's page cache at `kernelPerMiB` ms each, 50 ms per 16 MiB. */
  function feed(c: ReturnType<typeof host>, mib: number, kernelPerMiB: number): void {
    for (let i = 0; i < mib; i++) {
      c.chooser.noteCached(MiB);
      c.h.kernelMs += kernelPerMiB;
      if (i % 16 === 15) c.h.ms += 50;
    }
  }

  it('stays with the page cache while it costs the kernel little per MiB', () => {
    const c = host();
    feed(c, 1024, 1.2);
    expect(c.chooser.prefersDirect).to.equal(false);
    expect(c.chooser.lastSampleMsPerMiB, 'what the metrics report').to.be.closeTo(1.2, 0.05);
  });

  it('writes directly for 30 s after a costly sample, then samples the page cache again, doubling the time while it stays costly', () => {
    const c = host();
    feed(c, 80, 6);
    expect(c.chooser.prefersDirect, 'after 64 MiB at 6 ms each').to.equal(true);
    c.h.ms += 29_000;
    expect(c.chooser.prefersDirect, 'within 30 s').to.equal(true);
    c.h.ms += 2_000;
    expect(c.chooser.prefersDirect, 'after 30 s: the page cache again').to.equal(false);
    feed(c, 80, 6);
    expect(c.chooser.prefersDirect).to.equal(true);
    c.h.ms += 31_000;
    expect(c.chooser.prefersDirect, 'the second time for 60 s').to.equal(true);
    c.h.ms += 30_000;
    expect(c.chooser.prefersDirect).to.equal(false);
    feed(c, 80, 1);
    expect(c.chooser.prefersDirect, 'cheap again').to.equal(false);
  });

  it('does not judge by a sample that took more than 2 s (other work than the writes, at so slow a pace)', () => {
    const c = host();
    for (let i = 0; i < 200; i++) {
      c.chooser.noteCached(MiB);
      c.h.kernelMs += 10;
      c.h.ms += 100;
    }
    expect(c.chooser.prefersDirect).to.equal(false);
  });

  it('writes directly while two or more large writes are under way, however cheap the page cache, and samples none of their bytes', () => {
    const c = host();
    feed(c, 80, 1);
    const endFirst = c.chooser.largeWriteBegan();
    expect(c.chooser.prefersDirect, 'one large write: the page cache').to.equal(false);
    const endSecond = c.chooser.largeWriteBegan();
    expect(c.chooser.prefersDirect, 'two at once').to.equal(true);
    feed(c, 80, 6);
    endSecond();
    endSecond();
    expect(c.chooser.prefersDirect, 'one again (ending twice counts once), and the costly bytes beside the other write were not a sample').to.equal(false);
    endFirst();
    feed(c, 80, 6);
    expect(c.chooser.prefersDirect, 'a costly sample of a lone write still counts').to.equal(true);
  });

  it('a driver set to auto writes two large writes at once directly past their first MiB, and a lone one through the cheap page cache', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-fs-auto-'));
    const chooser = new WritePathChooser(() => 0, () => 0);
    const driver = new FilesystemDriver(root, { directIO: 'auto', writePath: chooser });
    const data = Buffer.alloc(24 * MiB);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i);
    const pieces = (): Buffer[] => Array.from({ length: data.length / (64 * 1024) }, (_, i) => data.subarray(i * 64 * 1024, (i + 1) * 64 * 1024));
    /** Writes `source` to `path` and checks the bytes; the bytes written directly. */
    const write = async (path: string, source: AsyncIterable<Buffer>) => {
      const writer = await driver.writer(path, false);
      await writer.write(source);
      await writer.commit();
      await writer.close();
      expect((await driver.getContent(path))!.equals(data), path).to.equal(true);
    };
    try {
      let before = directIO.bytesWritten;
      await write('/alone', Readable.from(pieces()));
      expect(directIO.bytesWritten - before, 'alone').to.equal(0);
      // Each write goes on past 2 MiB only once the other has passed it too: both are large writes at once.
      const passed: Array<() => void> = [];
      const both = Promise.all([0, 1].map((i) => new Promise<void>((resolve) => (passed[i] = resolve))));
      async function* paced(i: number): AsyncGenerator<Buffer> {
        for (const [n, piece] of pieces().entries()) {
          if (n === 32) {
            passed[i]!();
            await both;
          }
          yield piece;
        }
      }
      before = directIO.bytesWritten;
      await Promise.all([write('/one', paced(0)), write('/two', paced(1))]);
      expect(directIO.bytesWritten - before, 'two at once').to.be.above(30 * MiB);
      before = directIO.bytesWritten;
      await write('/alone-again', Readable.from(pieces()));
      expect(directIO.bytesWritten - before, 'alone again: both ended').to.equal(0);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a driver set to auto writes whole slabs directly once the page cache was measured costly, with the same bytes', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-fs-auto-'));
    // Every reading of the kernel's CPU is a second later than the one before: a page cache costly at any pace.
    let kernelMs = 0;
    const driver = new FilesystemDriver(root, { directIO: 'auto', writePath: new WritePathChooser(() => 0, () => (kernelMs += 1000)) });
    const cheap = new FilesystemDriver(root, { directIO: 'auto', writePath: new WritePathChooser(() => 0, () => 0) });
    try {
      const data = Buffer.alloc(72 * MiB);
      for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i);
      const write = async (d: FilesystemDriver, path: string) => {
        const before = directIO.bytesWritten;
        const writer = await d.writer(path, false);
        // As a socket delivers them: 10 bytes, then 64 KiB at a time.
        const chunks = [data.subarray(0, 10)];
        for (let i = 10; i < data.length; i += 64 * 1024) chunks.push(data.subarray(i, i + 64 * 1024));
        await writer.write(Readable.from(chunks));
        await writer.commit();
        await writer.close();
        expect((await d.getContent(path))!.equals(data)).to.equal(true);
        return directIO.bytesWritten - before;
      };
      expect(await write(cheap, '/a'), 'cheap: the page cache').to.equal(0);
      expect(await write(cheap, '/b'), 'still cheap').to.equal(0);
      // The sample ends 65 MiB in (it starts with the second MiB and holds 64): the rest goes directly.
      expect(await write(driver, '/c'), 'measuring: the page cache').to.be.at.most(7 * MiB);
      expect(await write(driver, '/d'), 'measured costly: directly').to.be.above(60 * MiB);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

// Thousands of small files in a folder (every search summary at a first start) are read on threads of their own.
describe('filesystem driver: slabs for direct writes', () => {
  it('reuses slab memory from one write to the next, and lets it go once the pool was idle for 2 s', () => {
    let ms = 0;
    const pool = new SlabPool(() => ms);
    const first = [pool.acquire()!, pool.acquire()!, pool.acquire()!];
    expect(pool.created, 'two slabs to a memory').to.equal(2);
    for (const slab of first) pool.release(slab);
    ms += 1500;
    pool.releaseIdle();
    expect(pool.held, 'used 1.5 s ago: kept').to.equal(2);
    const again = [pool.acquire()!, pool.acquire()!, pool.acquire()!];
    expect(pool.created, 'the next write made no new memory').to.equal(2);
    expect(again[0]!.byteOffset % 4096, 'page-aligned').to.equal(0);
    for (const slab of again.slice(1)) pool.release(slab);
    ms += 2500;
    pool.releaseIdle();
    expect(pool.held, 'idle 2.5 s: the memory with no slab in use goes, the one in use stays').to.equal(1);
    pool.release(again[0]!);
    ms += 2000;
    pool.releaseIdle();
    expect(pool.held, 'all idle: none held').to.equal(0);
  });

  it('hands out at most 16 slabs (64 MiB) at once', () => {
    let ms = 0;
    const pool = new SlabPool(() => ms);
    const taken = Array.from({ length: 16 }, () => pool.acquire());
    expect(taken.every((s) => s?.length === 4 * 1024 * 1024)).to.equal(true);
    expect(pool.acquire(), 'the 17th').to.equal(undefined);
    pool.release(taken[0]!);
    expect(pool.acquire()).to.equal(taken[0]);
    for (const slab of taken) pool.release(slab!);
    ms += 2000;
    pool.releaseIdle();
    expect(pool.held).to.equal(0);
  });
});

describe('filesystem driver: reading many files at once', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-fs-many-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('gives every one of 3,000 files (several batches on each reading thread) once, by name; child folders left out', async () => {
    const driver = new FilesystemDriver(root);
    const names = Array.from({ length: 3000 }, (_, i) => `${i}.json`);
    for (let i = 0; i < names.length; i += 500) {
      await Promise.all(names.slice(i, i + 500).map((n, j) => ((i + j) % 97 === 5 ? undefined : driver.putContent(`/many/${n}`, JSON.stringify({ i: i + j, pad: 'x'.repeat((i + j) % 300) })))));
    }
    await driver.putContent('/many/folder/inside', 'x');
    const contents = new Map<string, string>();
    await driver.getFolderContents('/many', (name, content) => {
      expect(contents.has(name), `${name} given twice`).to.equal(false);
      contents.set(name, content.toString());
    });
    const written = names.filter((_, i) => i % 97 !== 5);
    expect([...contents.keys()].sort()).to.deep.equal([...written].sort());
    for (const name of written) {
      const i = Number.parseInt(name, 10);
      expect(JSON.parse(contents.get(name)!), name).to.deep.equal({ i, pad: 'x'.repeat(i % 300) });
    }
  });

  it('a file that cannot be read (a socket: ENXIO) fails the whole read, and the next read works', async () => {
    const driver = new FilesystemDriver(root);
    const socket = createServer();
    await new Promise<void>((listening) => socket.listen(join(root, 'many', 'socket'), listening));
    let seen = 0;
    let error: unknown;
    try {
      await driver.getFolderContents('/many', () => seen++);
    } catch (err) {
      error = err;
    } finally {
      await new Promise((closed) => socket.close(closed));
    }
    expect((error as NodeJS.ErrnoException)?.code).to.equal('ENXIO');
    expect(seen).to.be.below(3000 - 31);
    let read = 0;
    await driver.getFolderContents('/many', () => read++);
    expect(read).to.equal(3000 - 31);
  });

  it('a caller that throws stops the read with its error', async () => {
    const driver = new FilesystemDriver(root);
    let seen = 0;
    let error: unknown;
    try {
      await driver.getFolderContents('/many', () => {
        if (++seen === 1200) throw new Error('enough');
      });
    } catch (err) {
      error = err;
    }
    expect((error as Error)?.message).to.equal('enough');
    expect(seen).to.equal(1200);
  });
});

// An upload's folder is empty once its data moved into the blob store: it is removed in one step, and a
// folder that still holds files is removed whole.
describe('filesystem driver: deleting folders', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-fs-delete-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('removes an empty folder, and says false for one already gone', async () => {
    const driver = new FilesystemDriver(root);
    await driver.putContent('/a/b/file', 'x');
    await driver.move('/a/b/file', '/c/file');
    expect(await driver.list('/a')).to.deep.equal(['/a/b']);
    expect(await driver.delete('/a/b')).to.equal(true);
    expect(await driver.list('/a')).to.deep.equal([]);
    expect(await driver.delete('/a/b')).to.equal(false);
    expect((await driver.getContent('/c/file'))?.toString()).to.equal('x');
  });

  it('removes a folder with files in it, files and all', async () => {
    const driver = new FilesystemDriver(root);
    await driver.putContent('/d/e/one', '1');
    await driver.putContent('/d/e/f/two', '2');
    expect(await driver.delete('/d/e')).to.equal(true);
    expect(await driver.list('/d')).to.deep.equal([]);
    expect(await driver.getContent('/d/e/f/two')).to.equal(undefined);
  });
});

// A link of the older shape is a folder where a link's file now goes (storage/links.ts): writing the file
// there fails, and the failed write must leave the folder as it was and no temp file behind. A revision
// pushed again only has its time moved (touch).
describe('filesystem driver: a file written where a folder is, and touch', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-fs-folder-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('fails, keeps the folder and its files, and leaves no temp file', async () => {
    const driver = new FilesystemDriver(root);
    await driver.putContent('/tags/v1/link', 'sha256:old');
    const temps = async () => (await readdir(join(root, '_tmp'))).length;
    const before = await temps();
    let error: unknown;
    try {
      await driver.putContent('/tags/v1', 'sha256:new');
    } catch (err) {
      error = err;
    }
    expect((error as NodeJS.ErrnoException)?.code).to.equal('EISDIR');
    expect((await driver.getContent('/tags/v1/link'))?.toString()).to.equal('sha256:old');
    expect(await driver.getContent('/tags/v1')).to.equal(undefined);
    expect(await temps()).to.equal(before);
  });

  it('moves a file\'s modification time to now and leaves its content; false for a missing file', async () => {
    const driver = new FilesystemDriver(root);
    await driver.putContent('/a/meta', 'facts');
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(join(root, 'a/meta'), old, old);
    expect(await driver.touch('/a/meta')).to.equal(true);
    expect((await driver.stat('/a/meta'))!.modifiedAt.getTime()).to.be.above(old.getTime() + 3_000_000);
    expect((await driver.getContent('/a/meta'))?.toString()).to.equal('facts');
    expect(await driver.touch('/a/missing')).to.equal(false);
    expect(await driver.touch('/b/missing')).to.equal(false);
  });
});
