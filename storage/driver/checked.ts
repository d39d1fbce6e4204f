// Paths are checked here, once, around every driver (as Distribution's base driver does), so that no driver
// has to remember to: a driver may take every path it is given as a valid one.
import type { Writable } from 'node:stream';
import { checkPath, type ByteRange, type ListPage, type PutOptions, type RedirectOptions, type StorageDriver } from './driver.ts';

const checked = new WeakSet<StorageDriver>();

/** The driver, with every path refused (InvalidPathError) before any of its methods runs. */
export function checkingPaths(driver: StorageDriver): StorageDriver {
  if (checked.has(driver)) return driver;
  const wrapper: StorageDriver = {
    name: driver.name,
    ...(driver.readableBeforeCommit && { readableBeforeCommit: true }),
    ...(driver.ready && { ready: () => driver.ready!() }),
    ...(driver.close && { close: () => driver.close!() }),
    getContent: async (path: string) => driver.getContent(checkPath(path)),
    ...(driver.getFolderContents && { getFolderContents: async (path: string, each: (name: string, content: Buffer) => void) => driver.getFolderContents!(checkPath(path), each) }),
    putContent: async (path: string, content: Buffer | string, options?: PutOptions) => driver.putContent(checkPath(path), content, options),
    reader: async (path: string, range?: ByteRange) => driver.reader(checkPath(path), range),
    ...(driver.copyTo && { copyTo: async (path: string, sink: Writable, range?: ByteRange) => driver.copyTo!(checkPath(path), sink, range) }),
    ...(driver.redirectURL && { redirectURL: async (path: string, options: RedirectOptions) => driver.redirectURL!(checkPath(path), options) }),
    writer: async (path: string, append: boolean) => driver.writer(checkPath(path), append),
    stat: async (path: string) => driver.stat(checkPath(path)),
    list: async (path: string, page?: ListPage) => driver.list(checkPath(path), page),
    move: async (from: string, to: string) => driver.move(checkPath(from), checkPath(to)),
    delete: async (path: string) => driver.delete(checkPath(path)),
    ...(driver.touch && { touch: async (path: string) => driver.touch!(checkPath(path)) }),
  };
  checked.add(wrapper);
  return wrapper;
}
