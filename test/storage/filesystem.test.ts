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

// Where the filesystem refuses direct I/O, blobs go through the page cache: the same contract holds.
describeStorageDriver('filesystem, page cache only (no direct I/O)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-driver-'));
  directIO.enabled = false;
  return {
    driver: new FilesystemDriver(root),
    reopen: () => new FilesystemDriver(root),
    cleanup: async () => {
      directIO.enabled = true;
      await rm(root, { recursive: true, force: true });
    },
  };
});

describe('filesystem driver: direct I/O', () => {
  it('writes whole slabs of a large write straight to the device; its first MiB and the unaligned rest through the page cache', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-fs-direct-'));
    try {
      const driver = new FilesystemDriver(root);
      const before = directIO.bytesWritten;
      const writer = await driver.writer('/blob', false);
      // 10 bytes first, so the direct part starts at a block past the first MiB and ends at the last whole slab.
      const data = Buffer.alloc(5 * 1024 * 1024 + 100, 7);
      await writer.write(Readable.from([data.subarray(0, 10), data.subarray(10)]));
      await writer.commit();
      await writer.close();
      expect(directIO.enabled, 'this machine\'s filesystem takes direct I/O').to.equal(true);
      const direct = directIO.bytesWritten - before;
      expect(direct % 4096).to.equal(0);
      expect(direct).to.be.within(2 * 1024 * 1024, data.length - 1024 * 1024);
      expect((await driver.getContent('/blob'))!.equals(data)).to.equal(true);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
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
