// The StorageDriver contract: one suite that every driver must pass (filesystem now, S3 next).
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { checkingPaths, getFolderContents, InvalidPathError, PathNotFoundError, type StorageDriver } from '../../storage/index.ts';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function failingSource(good: Buffer): Readable {
  return Readable.from(
    (async function* () {
      yield good;
      throw new Error('source broke');
    })(),
  );
}

/** Bytes that differ from one position to the next, so that a misplaced range cannot go unnoticed. */
function pattern(size: number, seed: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + seed * 13 + (i >> 10)) % 251;
  return bytes;
}

function sha256(...buffers: Buffer[]): string {
  const hash = createHash('sha256');
  for (const buffer of buffers) hash.update(buffer);
  return hash.digest('hex');
}

async function digestOf(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A source that yields a buffer in 64 KiB chunks, as a request body arrives. */
function chunked(data: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += chunk) yield data.subarray(i, i + chunk);
    })(),
  );
}

/** Appends through a new writer, as one PATCH of an upload session does. */
async function append(driver: StorageDriver, path: string, data: Buffer): Promise<number> {
  const writer = await driver.writer(path, true);
  try {
    await writer.write(chunked(data));
    return writer.size;
  } finally {
    await writer.close();
  }
}

async function commit(driver: StorageDriver, path: string): Promise<void> {
  const writer = await driver.writer(path, true);
  try {
    await writer.commit();
  } finally {
    await writer.close();
  }
}

const MiB = 1024 * 1024;

export interface DriverUnderTest {
  driver: StorageDriver;
  /** Another driver on the same storage, as another process (or the same one after a restart) has. */
  reopen(): StorageDriver;
  /** Storage paths with a multipart upload begun and neither completed nor aborted (S3 only). */
  pendingUploads?(): Promise<string[]>;
  cleanup(): Promise<void>;
}

export function describeStorageDriver(name: string, make: () => Promise<DriverUnderTest>): void {
  describe(`StorageDriver contract: ${name}`, () => {
    let driver: StorageDriver;
    let subject: DriverUnderTest;
    before(async () => {
      subject = await make();
      // As storage uses every driver: behind the one path check (the drivers themselves check none).
      driver = checkingPaths(subject.driver);
    });
    after(() => subject?.cleanup());
    const pendingUnder = async (path: string) => ((await subject.pendingUploads?.()) ?? []).filter((p) => p.startsWith(`${path}/`) || p === path);

    it('putContent then getContent returns the same bytes; a missing path gives undefined', async () => {
      await driver.putContent('/c/a/file', 'hello');
      expect((await driver.getContent('/c/a/file'))!.toString()).to.equal('hello');
      expect(await driver.getContent('/c/a/missing')).to.equal(undefined);
    });

    it('getFolderContents (the driver\'s bulk read, or list and getContent several at a time) gives each file of a folder once by its name; child folders and missing folders none', async () => {
      const names = Array.from({ length: 40 }, (_, i) => String(i).padStart(2, '0'));
      await Promise.all(names.map((n, i) => (i % 7 === 3 ? undefined : driver.putContent(`/many/${n}`, `file ${i} `.repeat(i + 1)))));
      await driver.putContent('/many/folder/inside', 'x');
      const got = new Map<string, string>();
      await getFolderContents(driver, '/many', (name, content) => {
        expect(got.has(name), `${name} given twice`).to.equal(false);
        got.set(name, content.toString());
      });
      const expected = new Map(names.flatMap((n, i) => (i % 7 === 3 ? [] : [[n, `file ${i} `.repeat(i + 1)] as const])));
      expect(got).to.deep.equal(expected);
      let nowhere = 0;
      await getFolderContents(driver, '/nowhere/at/all', () => nowhere++);
      await getFolderContents(driver, '/many/00', () => nowhere++);
      expect(nowhere).to.equal(0);
      let error: unknown;
      try {
        await getFolderContents(driver, '/many/../escape', () => {});
      } catch (err) {
        error = err;
      }
      expect(error).to.be.instanceOf(InvalidPathError);
    });

    it('putContent replaces content whole', async () => {
      await driver.putContent('/c/replace', 'a much longer first version');
      await driver.putContent('/c/replace', 'short');
      expect((await driver.getContent('/c/replace'))!.toString()).to.equal('short');
    });

    it('stat reports size and kind; a missing path gives undefined', async () => {
      await driver.putContent('/s/dir/file', Buffer.alloc(1234));
      const file = await driver.stat('/s/dir/file');
      expect(file).to.include({ size: 1234, isDirectory: false, path: '/s/dir/file' });
      expect(file!.modifiedAt).to.be.instanceOf(Date);
      expect((await driver.stat('/s/dir'))!.isDirectory).to.equal(true);
      expect(await driver.stat('/s/nothing')).to.equal(undefined);
    });

    it('reader streams a whole file or an inclusive byte range', async () => {
      await driver.putContent('/r/file', '0123456789');
      expect((await readAll(await driver.reader('/r/file'))).toString()).to.equal('0123456789');
      expect((await readAll(await driver.reader('/r/file', { start: 3, end: 6 }))).toString()).to.equal('3456');
      expect((await readAll(await driver.reader('/r/file', { start: 9, end: 9 }))).toString()).to.equal('9');
    });

    it('reader of a missing path throws PathNotFoundError', async () => {
      let error: unknown;
      try {
        await driver.reader('/r/missing');
      } catch (err) {
        error = err;
      }
      expect(error).to.be.instanceOf(PathNotFoundError);
    });

    it('writer appends across writers and reports the size', async () => {
      const first = await driver.writer('/w/upload', true);
      expect(first.size).to.equal(0);
      expect(await first.write(Readable.from([Buffer.from('abc'), Buffer.from('def')]))).to.equal(6);
      expect(first.size).to.equal(6);
      await first.close();
      const second = await driver.writer('/w/upload', true);
      expect(second.size).to.equal(6);
      await second.write(Readable.from([Buffer.from('ghi')]));
      await second.commit();
      await second.close();
      expect((await driver.getContent('/w/upload'))!.toString()).to.equal('abcdefghi');
      const fresh = await driver.writer('/w/upload', false);
      expect(fresh.size).to.equal(0);
      await fresh.close();
    });

    it('a write whose source fails is rolled back whole', async () => {
      const writer = await driver.writer('/w/rollback', true);
      await writer.write(Readable.from([Buffer.from('kept')]));
      let failed = false;
      try {
        await writer.write(failingSource(Buffer.alloc(200_000, 1)));
      } catch {
        failed = true;
      }
      expect(failed).to.equal(true);
      expect(writer.size).to.equal(4);
      expect((await driver.stat('/w/rollback'))!.size).to.equal(4);
      await writer.commit();
      await writer.close();
      expect((await driver.getContent('/w/rollback'))!.toString()).to.equal('kept');
    });

    it('writes of any length at any offset reassemble exactly, across writers, and a failed one rolls back', async () => {
      // Lengths and chunk boundaries that fall on and off block and 1 MiB boundaries, from a fixed seed.
      let seed = 12345;
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const lengths = [1, 4095, 4097, MiB, MiB + 17, 3 * MiB - 5, 512, 8191, 2 * MiB + 4096];
      const expected: Buffer[] = [];
      for (const [i, length] of lengths.entries()) {
        const data = pattern(length, i);
        const writer = await driver.writer('/w/any', true);
        try {
          const chunks: Buffer[] = [];
          for (let at = 0; at < length; ) {
            const size = Math.min(length - at, 1 + random(300 * 1024));
            chunks.push(data.subarray(at, at + size));
            at += size;
          }
          expect(await writer.write(Readable.from(chunks))).to.equal(length);
          if (i === 4) {
            const size = writer.size;
            let failed = false;
            await writer.write(failingSource(pattern(3 * MiB, 99))).catch(() => (failed = true));
            expect(failed).to.equal(true);
            expect(writer.size).to.equal(size);
          }
        } finally {
          await writer.close();
        }
        expected.push(data);
      }
      await commit(driver, '/w/any');
      const whole = Buffer.concat(expected);
      expect((await driver.stat('/w/any'))!.size).to.equal(whole.length);
      expect(await digestOf(await driver.reader('/w/any'))).to.equal(sha256(whole));
      expect(await digestOf(await subject.reopen().reader('/w/any'))).to.equal(sha256(whole));
    });

    it('a file being written has its size at once: stat and list see it before it is committed', async () => {
      const created = await driver.writer('/w/session/data', false);
      await created.close();
      expect(await driver.stat('/w/session/data')).to.include({ size: 0, isDirectory: false });
      expect(await append(driver, '/w/session/data', Buffer.from('abc'))).to.equal(3);
      expect(await driver.stat('/w/session/data')).to.include({ size: 3, isDirectory: false });
      expect(await driver.list('/w/session')).to.deep.equal(['/w/session/data']);
      expect((await driver.stat('/w/session'))!.isDirectory).to.equal(true);
    });

    it('readableBeforeCommit: a driver that claims it lets another process read, mid-write, every byte stat reports', async () => {
      // Claimed or not, the path-checking wrapper storage uses says the same (S3 does not claim it).
      expect(driver.readableBeforeCommit === true).to.equal(subject.driver.readableBeforeCommit === true);
      if (!driver.readableBeforeCommit) return void expect(subject.driver.name).to.equal('s3');
      const data = pattern(6 * MiB + 4321, 5);
      let resume!: () => void;
      const paused = new Promise<void>((resolve) => (resume = resolve));
      let reachedPause!: () => void;
      const atPause = new Promise<void>((resolve) => (reachedPause = resolve));
      const writer = await driver.writer('/w/follow/data', false);
      const writing = writer.write(
        (async function* () {
          const half = 3 * MiB + 777;
          for (let i = 0; i < half; i += 64 * 1024) yield data.subarray(i, Math.min(i + 64 * 1024, half));
          reachedPause();
          await paused;
          for (let i = half; i < data.length; i += 64 * 1024) yield data.subarray(i, Math.min(i + 64 * 1024, data.length));
        })(),
      );
      await atPause;
      const other = subject.reopen();
      // Whatever part of the first half is on the way to the file, what stat reports is there, byte-exact.
      const midway = (await other.stat('/w/follow/data'))!.size;
      expect(midway).to.be.at.most(3 * MiB + 777);
      if (midway > 0) expect((await readAll(await other.reader('/w/follow/data', { start: 0, end: midway - 1 }))).equals(data.subarray(0, midway))).to.equal(true);
      resume();
      await writing;
      const written = (await other.stat('/w/follow/data'))!.size;
      expect(written).to.equal(data.length);
      expect((await readAll(await other.reader('/w/follow/data', { start: 0, end: written - 1 }))).equals(data)).to.equal(true);
      await writer.close();
    });

    it('many small writes, each through a new writer, reassemble exactly (past several 5 MiB parts)', async () => {
      const pieces: Buffer[] = [];
      for (let i = 0; i < 44; i++) pieces.push(pattern(250_000 + i * 997, i));
      let size = 0;
      for (const piece of pieces) {
        size += piece.length;
        expect(await append(driver, '/w/small/data', piece)).to.equal(size);
      }
      expect((await driver.stat('/w/small/data'))!.size).to.equal(size);
      await commit(driver, '/w/small/data');
      expect(await digestOf(await driver.reader('/w/small/data'))).to.equal(sha256(...pieces));
      expect((await driver.stat('/w/small/data'))!.size).to.equal(size);
    });

    it('a writer begun by one driver continues in another (another process, or after a restart)', async () => {
      const first = pattern(7 * MiB + 12_345, 1);
      const second = pattern(4 * MiB + 1, 2);
      expect(await append(driver, '/w/shared/data', first)).to.equal(first.length);
      const other = subject.reopen();
      const writer = await other.writer('/w/shared/data', true);
      expect(writer.size).to.equal(first.length);
      await writer.write(chunked(second));
      await writer.close();
      await commit(subject.reopen(), '/w/shared/data');
      expect(await digestOf(await driver.reader('/w/shared/data'))).to.equal(sha256(first, second));
    });

    it('appends to a committed file, small or spanning parts, and commits again', async () => {
      const small = await driver.writer('/w/again/small', true);
      await small.write(Readable.from([Buffer.from('abc')]));
      await small.commit();
      await small.close();
      expect(await append(driver, '/w/again/small', Buffer.from('def'))).to.equal(6);
      await commit(driver, '/w/again/small');
      expect((await driver.getContent('/w/again/small'))!.toString()).to.equal('abcdef');

      const parts = [pattern(12 * MiB + 3, 3), pattern(MiB + 7, 4), pattern(6 * MiB, 5)];
      await append(driver, '/w/again/large', parts[0]!);
      await commit(driver, '/w/again/large');
      expect((await driver.stat('/w/again/large'))!.size).to.equal(parts[0]!.length);
      expect(await append(driver, '/w/again/large', parts[1]!)).to.equal(parts[0]!.length + parts[1]!.length);
      await commit(driver, '/w/again/large');
      expect(await append(driver, '/w/again/large', parts[2]!)).to.equal(parts[0]!.length + parts[1]!.length + parts[2]!.length);
      await commit(driver, '/w/again/large');
      // Committing with nothing new changes nothing.
      await commit(driver, '/w/again/large');
      const all = Buffer.concat(parts);
      expect(await digestOf(await driver.reader('/w/again/large'))).to.equal(sha256(all));
      const range = { start: 5 * MiB - 100, end: 13 * MiB + 100 };
      const read = await readAll(await driver.reader('/w/again/large', range));
      expect(read.equals(all.subarray(range.start, range.end + 1))).to.equal(true);
    });

    it('a failed write is rolled back whole even past part boundaries; the next write stores those bytes again', async () => {
      const first = pattern(6 * MiB + 5, 6);
      const last = pattern(3 * MiB + 11, 7);
      expect(await append(driver, '/w/failed/data', first)).to.equal(first.length);
      const writer = await driver.writer('/w/failed/data', true);
      let failed = false;
      try {
        await writer.write(failingSource(pattern(9 * MiB, 8)));
      } catch {
        failed = true;
      }
      expect(failed).to.equal(true);
      expect(writer.size).to.equal(first.length);
      await writer.close();
      expect((await driver.stat('/w/failed/data'))!.size).to.equal(first.length);
      expect(await append(driver, '/w/failed/data', last)).to.equal(first.length + last.length);
      await commit(driver, '/w/failed/data');
      expect(await digestOf(await driver.reader('/w/failed/data'))).to.equal(sha256(first, last));

      // A failed first write leaves nothing begun behind.
      const fresh = await driver.writer('/w/failed/fresh', false);
      try {
        await fresh.write(failingSource(pattern(11 * MiB, 9)));
      } catch {
        failed = true;
      }
      expect(fresh.size).to.equal(0);
      await fresh.close();
      expect(await pendingUnder('/w/failed/fresh')).to.deep.equal([]);
    });

    it('writer(path, false) starts anew, discarding what an unfinished writer stored', async () => {
      await append(driver, '/w/anew/data', pattern(7 * MiB, 10));
      const writer = await driver.writer('/w/anew/data', false);
      expect(writer.size).to.equal(0);
      await writer.close();
      expect((await driver.stat('/w/anew/data'))!.size).to.equal(0);
      expect(await pendingUnder('/w/anew/data')).to.deep.equal([]);
      expect(await append(driver, '/w/anew/data', Buffer.from('new'))).to.equal(3);
      await commit(driver, '/w/anew/data');
      expect((await driver.getContent('/w/anew/data'))!.toString()).to.equal('new');
    });

    it('delete of an upload folder or file in progress removes everything, multipart upload included', async () => {
      const created = await driver.writer('/u/session/data', false);
      await created.close();
      await driver.putContent('/u/session/startedat', 'now');
      await append(driver, '/u/session/data', pattern(7 * MiB, 11));
      expect(await driver.delete('/u/session')).to.equal(true);
      expect(await driver.stat('/u/session/data')).to.equal(undefined);
      expect(await driver.stat('/u/session')).to.equal(undefined);
      expect(await driver.list('/u')).to.deep.equal([]);
      expect(await pendingUnder('/u/session')).to.deep.equal([]);
      const after = await driver.writer('/u/session/data', true);
      expect(after.size).to.equal(0);
      await after.close();

      await append(driver, '/u/file/data', pattern(6 * MiB, 12));
      expect(await driver.delete('/u/file/data')).to.equal(true);
      expect(await driver.stat('/u/file/data')).to.equal(undefined);
      expect(await driver.list('/u/file')).to.deep.equal([]);
      expect(await pendingUnder('/u/file')).to.deep.equal([]);
      expect(await driver.delete('/u/file/data')).to.equal(false);
    });

    it('streams a large file through without holding it whole, byte-exact', async () => {
      const chunk = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < chunk.length; i++) chunk[i] = i % 253;
      const count = 48;
      const expected = createHash('sha256');
      for (let i = 0; i < count; i++) expected.update(chunk);
      const writer = await driver.writer('/big/file', false);
      await writer.write(Readable.from((function* () { for (let i = 0; i < count; i++) yield chunk; })()));
      await writer.commit();
      await writer.close();
      const actual = createHash('sha256');
      for await (const part of await driver.reader('/big/file')) actual.update(part as Buffer);
      expect(actual.digest('hex')).to.equal(expected.digest('hex'));
      expect((await driver.stat('/big/file'))!.size).to.equal(count * chunk.length);
    });

    it('copyTo, where a driver offers it, sends exactly the file or the range, and gives up when the sink closes', async () => {
      if (!driver.copyTo) {
        expect(driver.name).to.equal('s3'); // the S3 driver serves through reader (and may redirect)
        return;
      }
      const data = Buffer.alloc(5 * 1024 * 1024 + 123);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256;
      await driver.putContent('/copy/file', data);
      const collect = () => {
        const chunks: Buffer[] = [];
        const sink = new Writable({
          write(chunk: Buffer, _enc, callback) {
            chunks.push(Buffer.from(chunk)); // copied: the driver reuses its buffers
            setImmediate(callback);
          },
        });
        return { sink, bytes: () => Buffer.concat(chunks) };
      };
      const whole = collect();
      await driver.copyTo('/copy/file', whole.sink);
      expect(whole.bytes().equals(data)).to.equal(true);
      const part = collect();
      await driver.copyTo('/copy/file', part.sink, { start: 1_000_000, end: 3_500_000 });
      expect(part.bytes().equals(data.subarray(1_000_000, 3_500_001))).to.equal(true);
      let written = 0;
      const closing = new Writable({
        write(chunk: Buffer, _enc, callback) {
          written += chunk.length;
          callback();
          this.destroy();
        },
      });
      let error: unknown;
      try {
        await driver.copyTo('/copy/file', closing);
      } catch (err) {
        error = err;
      }
      expect(error).to.be.instanceOf(Error);
      expect(written).to.be.below(data.length);
      let missing: unknown;
      try {
        await driver.copyTo('/copy/none', collect().sink);
      } catch (err) {
        missing = err;
      }
      expect(missing).to.be.instanceOf(PathNotFoundError);
    });

    it('list gives the sorted direct children as full paths; a missing folder gives none', async () => {
      await driver.putContent('/l/b', '1');
      await driver.putContent('/l/a/deep', '2');
      await driver.putContent('/l/c', '3');
      expect(await driver.list('/l')).to.deep.equal(['/l/a', '/l/b', '/l/c']);
      expect(await driver.list('/l/none')).to.deep.equal([]);
    });

    it('list pages: at most `limit` children, beginning after the one named `after`', async () => {
      for (const name of ['e', 'a', 'd', 'b', 'c']) await driver.putContent(`/p/${name}`, name);
      await driver.putContent('/p/bb/deep', 'folder');
      expect(await driver.list('/p', { limit: 2 })).to.deep.equal(['/p/a', '/p/b']);
      expect(await driver.list('/p', { after: 'b', limit: 2 })).to.deep.equal(['/p/bb', '/p/c']);
      expect(await driver.list('/p', { after: 'c' })).to.deep.equal(['/p/d', '/p/e']);
      expect(await driver.list('/p', { after: 'e', limit: 3 })).to.deep.equal([]);
      expect(await driver.list('/p/none', { limit: 1 })).to.deep.equal([]);
    });

    it('move puts a file at a new path (creating folders) and removes the old one', async () => {
      await driver.putContent('/m/from', 'moving');
      await driver.move('/m/from', '/m/deep/er/to');
      expect((await driver.getContent('/m/deep/er/to'))!.toString()).to.equal('moving');
      expect(await driver.stat('/m/from')).to.equal(undefined);
      let error: unknown;
      try {
        await driver.move('/m/from', '/m/again');
      } catch (err) {
        error = err;
      }
      expect(error).to.be.instanceOf(PathNotFoundError);
    });

    it('delete removes a file or a whole tree and says whether anything was there', async () => {
      await driver.putContent('/d/tree/a', '1');
      await driver.putContent('/d/tree/b/c', '2');
      expect(await driver.delete('/d/tree')).to.equal(true);
      expect(await driver.stat('/d/tree/b/c')).to.equal(undefined);
      expect(await driver.list('/d/tree')).to.deep.equal([]);
      expect(await driver.delete('/d/tree')).to.equal(false);
    });

    for (const bad of ['relative/path', '/a/../b', '/a/./b', '/a//b', '/a/', '/a/b\0c', '/..', '/a\\b']) {
      it(`refuses the path ${JSON.stringify(bad)} before touching anything`, async () => {
        let error: unknown;
        try {
          await driver.putContent(bad, 'x');
        } catch (err) {
          error = err;
        }
        expect(error).to.be.instanceOf(InvalidPathError);
      });
    }
  });
}
