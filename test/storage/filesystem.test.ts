import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Readable } from 'node:stream';
import { directIO, FilesystemDriver } from '../../storage/index.ts';
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

  it('by default, and where the filesystem refused direct I/O, writes everything through the page cache', async () => {
    expect(await largeWrite({})).to.equal(0);
    directIO.enabled = false;
    try {
      expect(await largeWrite({ directIO: true })).to.equal(0);
    } finally {
      directIO.enabled = true;
    }
  });
});

// Thousands of small files (every search summary at a first start) are read on a thread of their own.
describe('filesystem driver: reading many files at once', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-fs-many-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('gives every one of 3,000 files (several batches of the reading thread) by its index, in order; missing ones and folders undefined', async () => {
    const driver = new FilesystemDriver(root);
    const paths = Array.from({ length: 3000 }, (_, i) => `/many/${i}.json`);
    for (let i = 0; i < paths.length; i += 500) {
      await Promise.all(paths.slice(i, i + 500).map((p, j) => ((i + j) % 97 === 5 ? undefined : driver.putContent(p, JSON.stringify({ i: i + j, pad: 'x'.repeat((i + j) % 300) })))));
    }
    await driver.putContent('/many/folder/inside', 'x');
    const asked = [...paths, '/many/folder'];
    const order: number[] = [];
    const contents: (string | undefined)[] = [];
    await driver.getContents(asked, (i, content) => {
      order.push(i);
      contents[i] = content?.toString();
    });
    expect(order).to.deep.equal(asked.map((_, i) => i));
    paths.forEach((_, i) => {
      if (i % 97 === 5) expect(contents[i], `file ${i}`).to.equal(undefined);
      else expect(JSON.parse(contents[i]!), `file ${i}`).to.deep.equal({ i, pad: 'x'.repeat(i % 300) });
    });
    expect(contents[paths.length]).to.equal(undefined);
  });

  it('a file that cannot be read fails the whole read, and the next read works', async () => {
    const driver = new FilesystemDriver(root);
    const paths = Array.from({ length: 2500 }, (_, i) => `/many/${i}.json`);
    // A name longer than any filesystem takes: ENAMETOOLONG, not a missing file.
    const unreadable = [...paths.slice(0, 1500), `/many/${'n'.repeat(300)}`, ...paths.slice(1500)];
    let seen = 0;
    let error: unknown;
    try {
      await driver.getContents(unreadable, () => seen++);
    } catch (err) {
      error = err;
    }
    expect((error as NodeJS.ErrnoException)?.code).to.equal('ENAMETOOLONG');
    expect(seen).to.be.below(unreadable.length);
    let read = 0;
    await driver.getContents(paths, (_, content) => (read += content ? 1 : 0));
    expect(read).to.be.above(2400);
  });

  it('a caller that throws stops the read with its error', async () => {
    const driver = new FilesystemDriver(root);
    const paths = Array.from({ length: 2500 }, (_, i) => `/many/${i}.json`);
    let error: unknown;
    try {
      await driver.getContents(paths, (i) => {
        if (i === 1200) throw new Error('enough');
      });
    } catch (err) {
      error = err;
    }
    expect((error as Error)?.message).to.equal('enough');
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
