// The push rules live in storage (UploadStore.complete, monolithic, mount): a caller that is not a route
// (a mirror, replication, the CLI) gets the quota, the cancellation of a refused session and the mount's
// read check right without sequencing anything itself.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { filesystemStorage, isStorageError, parseDigest, type Digest, type Storage } from '../../storage/index.ts';

const digestOf = (content: Buffer): Digest => parseDigest(`sha256:${createHash('sha256').update(content).digest('hex')}`);
const bytes = (n: number, fill: string) => Buffer.alloc(n, fill);

describe('storage: push rules', () => {
  let dir: string;
  let storage: Storage;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-push-rules-'));
    storage = filesystemStorage(dir);
    await storage.policies.set('team', { quotaBytes: 100 });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('complete past the quota refuses with QuotaExceeded, cancels the session and links nothing', async () => {
    const content = bytes(150, 'a');
    const upload = await storage.uploads.append(await storage.uploads.create('team/app'), Readable.from([content]));
    const refused = await storage.uploads.complete(upload, digestOf(content)).catch((err: unknown) => err);
    expect(isStorageError(refused, 'QuotaExceeded'), String(refused)).to.equal(true);
    expect(await storage.uploads.get('team/app', upload.id), 'the session is gone').to.equal(undefined);
    expect(await storage.blobs.sizeIn('team/app', digestOf(content))).to.equal(undefined);
    expect((await storage.quotas.usage('team')).bytes).to.equal(0);
  });

  it('a chunk whose announced length passes the quota is refused before a byte is stored', async () => {
    const upload = await storage.uploads.create('team/app');
    let read = 0;
    const source = Readable.from((function* () {
      read++;
      yield bytes(150, 'b');
    })());
    const refused = await storage.uploads.append(upload, source, { length: 150 }).catch((err: unknown) => err);
    expect(isStorageError(refused, 'QuotaExceeded'), String(refused)).to.equal(true);
    expect(read, 'the body was not read').to.equal(0);
    expect((await storage.uploads.get('team/app', upload.id))?.offset).to.equal(0);
  });

  it('a monolithic upload is stored and linked within the quota; past it nothing is left behind', async () => {
    const fits = bytes(60, 'c');
    await storage.uploads.monolithic('team/app', Readable.from([fits]), digestOf(fits), { length: fits.length });
    expect(await storage.blobs.sizeIn('team/app', digestOf(fits))).to.equal(60);

    const tooMuch = bytes(60, 'd');
    const refused = await storage.uploads.monolithic('team/app', Readable.from([tooMuch]), digestOf(tooMuch)).catch((err: unknown) => err);
    expect(isStorageError(refused, 'QuotaExceeded'), String(refused)).to.equal(true);
    expect(await storage.driver.list('/uploads'), 'no session outlives the refusal').to.deep.equal([]);
    expect((await storage.quotas.usage('team')).bytes).to.equal(60);
  });

  it('a mount links only from a source the caller may read, and counts against the quota', async () => {
    const content = bytes(70, 'e');
    const digest = digestOf(content);
    await storage.uploads.monolithic('other/src', Readable.from([content]), digest);
    const asked: string[] = [];
    const nobody = async (name: string) => {
      asked.push(name);
      return false;
    };
    expect(await storage.uploads.mount('team/app', digest, { from: 'other/src', mayRead: nobody })).to.equal(false);
    expect(await storage.uploads.mount('team/app', digest, { mayRead: nobody }), 'no from: any holder, if readable').to.equal(false);
    expect(asked).to.deep.equal(['other/src', 'other/src']);
    expect(await storage.blobs.sizeIn('team/app', digest)).to.equal(undefined);

    const anyone = async () => true;
    expect(await storage.uploads.mount('team/app', digest, { from: 'Not A Name', mayRead: anyone })).to.equal(false);
    expect(await storage.uploads.mount('team/app', digest, { from: 'other/src', mayRead: anyone })).to.equal(true);
    expect(await storage.blobs.sizeIn('team/app', digest)).to.equal(70);

    const big = bytes(40, 'f');
    await storage.uploads.monolithic('other/src', Readable.from([big]), digestOf(big));
    // linkStored (a mirror's, an importer's mount of any copy held) follows the same quota.
    const refused = await storage.uploads.linkStored('team/app', digestOf(big)).catch((err: unknown) => err);
    expect(isStorageError(refused, 'QuotaExceeded'), String(refused)).to.equal(true);
    expect(await storage.blobs.sizeIn('team/app', digestOf(big))).to.equal(undefined);
    expect(await storage.uploads.linkStored('team/app', digestOf(bytes(5, 'g'))), 'a blob held nowhere').to.equal(false);
  });
});
