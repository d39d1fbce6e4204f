// Upload sessions keep their start time in their index entry (/uploads/<id>); sessions opened by an older
// version (the name alone there, the time in a startedat file) still resume and still expire.
import { expect } from 'chai';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { filesystemStorage } from '../../storage/index.ts';
import { parseDigest } from '../../storage/reference.ts';

describe('unit: upload sessions', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-sessions-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keep name and start in one index entry, and belong to their repository only', async () => {
    const storage = filesystemStorage(dir);
    const upload = await storage.uploads.create('acme/app');
    expect(JSON.parse((await storage.driver.getContent(`/uploads/${upload.id}`))!.toString())).to.deep.equal({ name: 'acme/app', startedAt: upload.startedAt.toISOString() });
    // The bytes are one file, with no folder of their own.
    expect(await storage.driver.list('/repositories/acme/app/_uploads')).to.deep.equal([`/repositories/acme/app/_uploads/${upload.id}`]);
    expect((await storage.driver.stat(`/repositories/acme/app/_uploads/${upload.id}`))?.isDirectory).to.equal(false);
    expect((await storage.uploads.get('acme/app', upload.id))?.startedAt.toISOString()).to.equal(upload.startedAt.toISOString());
    expect(await storage.uploads.get('acme/other', upload.id)).to.equal(undefined);
  });

  it('resume and expire a session an older version opened', async () => {
    const storage = filesystemStorage(dir);
    const id = randomUUID();
    const started = new Date(Date.now() - 3_600_000);
    await storage.driver.putContent(`/uploads/${id}`, 'acme/app');
    await storage.driver.putContent(`/repositories/acme/app/_uploads/${id}/startedat`, started.toISOString());
    await storage.driver.putContent(`/repositories/acme/app/_uploads/${id}/data`, 'abc');
    const upload = await storage.uploads.get('acme/app', id);
    expect(upload).to.deep.include({ id, name: 'acme/app', offset: 3 });
    // Its bytes stay in its folder: a chunk continues them there, and completion takes them from there.
    const resumed = await storage.uploads.append(upload!, Readable.from([Buffer.from('def')]), { start: 3 });
    expect(resumed.offset).to.equal(6);
    expect((await storage.driver.getContent(`/repositories/acme/app/_uploads/${id}/data`))?.toString()).to.equal('abcdef');
    expect(upload?.startedAt.toISOString()).to.equal(started.toISOString());
    expect(await storage.uploads.purgeExpired(new Date(Date.now() - 60_000))).to.equal(1);
    expect(await storage.uploads.get('acme/app', id)).to.equal(undefined);
    expect(await storage.driver.list('/uploads')).to.deep.equal([]);
  });

  it('complete a session an older version opened, from its folder, and leave nothing of it', async () => {
    const storage = filesystemStorage(dir);
    const id = randomUUID();
    await storage.driver.putContent(`/uploads/${id}`, JSON.stringify({ name: 'acme/app', startedAt: new Date().toISOString() }));
    await storage.driver.putContent(`/repositories/acme/app/_uploads/${id}/data`, 'older bytes');
    const upload = await storage.uploads.get('acme/app', id);
    const digest = parseDigest(`sha256:${createHash('sha256').update('older bytes').digest('hex')}`);
    expect(await storage.uploads.complete(upload!, digest)).to.deep.equal({ size: 11 });
    expect(await storage.blobs.sizeIn('acme/app', digest)).to.equal(11);
    expect(await storage.driver.list('/repositories/acme/app/_uploads')).to.deep.equal([]);
    expect(await storage.driver.list('/uploads')).to.deep.equal([]);
  });
});
