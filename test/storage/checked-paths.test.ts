// Paths are checked once, around every driver, by storage itself: a driver that checks nothing (as the
// filesystem and S3 drivers now do) never sees an invalid path from any of storage's services.
import { expect } from 'chai';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStorage, FilesystemDriver, InvalidPathError, type StorageDriver } from '../../storage/index.ts';

describe('storage checks every path before its driver sees it', () => {
  let root: string;
  let seen: string[];
  let storage: ReturnType<typeof createStorage>;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-checked-'));
    const raw = new FilesystemDriver(root);
    seen = [];
    // Records every path a method is called with, then lets the real driver do the work.
    const recording = new Proxy(raw, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          seen.push(...args.flat().filter((a): a is string => typeof a === 'string' && a.startsWith('/')));
          return value.apply(target, args);
        };
      },
    }) as StorageDriver;
    storage = createStorage(recording);
  });
  after(() => rm(root, { recursive: true, force: true }));

  for (const [method, call] of [
    ['getContent', (d: StorageDriver) => d.getContent('/a/../../escape')],
    ['putContent', (d: StorageDriver) => d.putContent('/a/../../escape', 'x')],
    ['reader', (d: StorageDriver) => d.reader('/a/../../escape')],
    ['writer', (d: StorageDriver) => d.writer('/a/../../escape', false)],
    ['stat', (d: StorageDriver) => d.stat('/a/../../escape')],
    ['list', (d: StorageDriver) => d.list('/a/../../escape')],
    ['move', (d: StorageDriver) => d.move('/ok/file', '/a/../../escape')],
    ['delete', (d: StorageDriver) => d.delete('/a/../../escape')],
    ['getFolderContents', (d: StorageDriver) => d.getFolderContents!('/a/../../escape', () => {})],
  ] as const) {
    it(`${method}: refused with InvalidPathError, the driver never called`, async () => {
      seen.length = 0;
      let error: unknown;
      try {
        await call(storage.driver);
      } catch (err) {
        error = err;
      }
      expect(error).to.be.instanceOf(InvalidPathError);
      expect(seen).to.deep.equal([]);
    });
  }

  it('a valid path passes through to the driver', async () => {
    seen.length = 0;
    await storage.driver.putContent('/ok/file', 'x');
    expect(seen).to.deep.equal(['/ok/file']);
    expect(await readdir(join(root, 'ok'))).to.deep.equal(['file']);
  });
});
