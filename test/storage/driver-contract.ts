// The StorageDriver contract: one suite that every driver must pass (filesystem now, S3 next).
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { InvalidPathError, PathNotFoundError, type StorageDriver } from '../../storage/index.ts';

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

export function describeStorageDriver(name: string, make: () => Promise<{ driver: StorageDriver; cleanup(): Promise<void> }>): void {
  describe(`StorageDriver contract: ${name}`, () => {
    let driver: StorageDriver;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ driver, cleanup } = await make());
    });
    after(() => cleanup());

    it('putContent then getContent returns the same bytes; a missing path gives undefined', async () => {
      await driver.putContent('/c/a/file', 'hello');
      expect((await driver.getContent('/c/a/file'))!.toString()).to.equal('hello');
      expect(await driver.getContent('/c/a/missing')).to.equal(undefined);
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
      await writer.close();
      expect((await driver.getContent('/w/rollback'))!.toString()).to.equal('kept');
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

    it('list gives the sorted direct children as full paths; a missing folder gives none', async () => {
      await driver.putContent('/l/b', '1');
      await driver.putContent('/l/a/deep', '2');
      await driver.putContent('/l/c', '3');
      expect(await driver.list('/l')).to.deep.equal(['/l/a', '/l/b', '/l/c']);
      expect(await driver.list('/l/none')).to.deep.equal([]);
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
