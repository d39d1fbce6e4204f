// The filesystem driver keeps the inodes of small files it frees (deleted, or replaced by a write) and
// writes them again as later temp files: on ext4 without a journal every freed inode slows each file
// creation for a minute or more. What a reader sees must not change: a kept file is never one that still
// has another name, and every write still lands whole.
import { expect } from 'chai';
import { existsSync, linkSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilesystemDriver } from '../../storage/driver/filesystem.ts';
import { waitFor } from '../helpers/wait.ts';

describe('unit: filesystem driver spare inodes', () => {
  let dir: string;
  let driver: FilesystemDriver;
  const ino = (path: string) => statSync(join(dir, path)).ino;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-spares-'));
    driver = new FilesystemDriver(dir, { spareMinAgeMs: 0 });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a deleted small file again instead of a new one', async () => {
    await driver.putContent('/a/deleted', 'first');
    const freed = ino('/a/deleted');
    expect(await driver.delete('/a/deleted')).to.equal(true);
    expect(await driver.getContent('/a/deleted')).to.equal(undefined);
    expect(readdirSync(join(dir, '_tmp'))).to.have.length(1);
    await driver.putContent('/b/new', 'second, longer than the first');
    expect(ino('/b/new')).to.equal(freed);
    expect((await driver.getContent('/b/new'))?.toString()).to.equal('second, longer than the first');
  });

  it('keeps the version a write replaces, and the replacing content is whole', async () => {
    await driver.putContent('/doc', 'version one, the longest of them all');
    const replaced = ino('/doc');
    await driver.putContent('/doc', 'version two');
    expect((await driver.getContent('/doc'))?.toString()).to.equal('version two');
    expect(ino('/doc')).to.not.equal(replaced);
    await driver.putContent('/other', 'three');
    expect(ino('/other')).to.equal(replaced);
    expect((await driver.getContent('/other'))?.toString()).to.equal('three');
    expect((await driver.getContent('/doc'))?.toString()).to.equal('version two');
  });

  it('never writes a freed file that still has another name', async () => {
    await driver.putContent('/linked', 'shared bytes');
    linkSync(join(dir, 'linked'), join(dir, 'second-name'));
    const shared = ino('/linked');
    expect(await driver.delete('/linked')).to.equal(true);
    await driver.putContent('/next', 'new bytes');
    expect(ino('/next')).to.not.equal(shared);
    expect(readFileSync(join(dir, 'second-name'), 'utf8')).to.equal('shared bytes');
  });

  it('takes, of the oldest spares, one no longer than the new content, so that nothing is cut', async () => {
    await driver.putContent('/long', 'a freed file longer than the next content');
    await driver.putContent('/short', 'short');
    const [long, short] = [ino('/long'), ino('/short')];
    await driver.delete('/long');
    await driver.delete('/short');
    await driver.putContent('/next', 'twelve bytes');
    expect(ino('/next')).to.equal(short);
    expect((await driver.getContent('/next'))?.toString()).to.equal('twelve bytes');
    // None short enough: the oldest is cut to the new length.
    await driver.putContent('/last', 'two');
    expect(ino('/last')).to.equal(long);
    expect((await driver.getContent('/last'))?.toString()).to.equal('two');
  });

  it('frees large files as before', async () => {
    await driver.putContent('/large', Buffer.alloc(256 * 1024, 1));
    await driver.putContent('/large', Buffer.alloc(256 * 1024, 2));
    await driver.delete('/large');
    expect(readdirSync(join(dir, '_tmp'))).to.deep.equal([]);
  });

  it('waits the minimum age before writing a freed file again', async () => {
    const patient = new FilesystemDriver(dir, { spareMinAgeMs: 60_000 });
    await patient.putContent('/young', 'freed just now');
    const freed = ino('/young');
    await patient.delete('/young');
    await patient.putContent('/fresh', 'y');
    expect(ino('/fresh')).to.not.equal(freed);
  });

  it('removes temp files left by ended processes once they are old, never its own process\'s', async () => {
    // Its own spare first: a file of this process in the temp folder, as old as the foreign one.
    await driver.putContent('/kept', 'this process\'s spare');
    await driver.delete('/kept');
    const [own] = readdirSync(join(dir, '_tmp'));
    writeFileSync(join(dir, '_tmp', 'ended-process-1'), 'left behind');
    const written = statSync(join(dir, '_tmp', 'ended-process-1')).ctimeMs;
    await waitFor(() => Date.now() > written + 1 || undefined, 'the clock to pass the file\'s change time');
    // A later start (another driver on the same folder) sweeps, with everything older than 0 ms stale.
    await new FilesystemDriver(dir, { tempStaleMs: 0 }).putContent('/next', 'starts the sweep');
    await waitFor(() => !existsSync(join(dir, '_tmp', 'ended-process-1')) || undefined, 'the left-behind temp file to go');
    expect(existsSync(join(dir, '_tmp', own!))).to.equal(true);
  });

  it('writes empty markers as names of one shared empty file, never as new files, and none of them changes another', async () => {
    const unflushed = { durable: false };
    for (const path of ['/m/one', '/m/two', '/n/three']) await driver.putContent(path, '', unflushed);
    expect(ino('/m/two')).to.equal(ino('/m/one'));
    expect(ino('/n/three')).to.equal(ino('/m/one'));
    expect(statSync(join(dir, 'm/one')).nlink).to.equal(4);
    // Replaced by content, a marker becomes a file of its own; the others stay empty.
    await driver.putContent('/m/one', 'now content');
    expect((await driver.getContent('/m/one'))?.toString()).to.equal('now content');
    expect(ino('/m/one')).to.not.equal(ino('/m/two'));
    // A deleted marker is no spare: the next file written is not the shared inode.
    const shared = ino('/m/two');
    expect(await driver.delete('/m/two')).to.equal(true);
    await driver.putContent('/after', 'written after the delete');
    expect(ino('/after')).to.not.equal(shared);
    expect((await driver.getContent('/n/three'))?.length).to.equal(0);
    // The source gone (a later start sweeps this process's temp files): the next marker makes another.
    for (const name of readdirSync(join(dir, '_tmp'))) rmSync(join(dir, '_tmp', name));
    await driver.putContent('/n/four', '', unflushed);
    expect((await driver.getContent('/n/four'))?.length).to.equal(0);
    expect(ino('/n/four')).to.not.equal(shared);
    expect((await driver.getContent('/n/three'))?.length).to.equal(0);
    // A durable empty file is a file of its own.
    await driver.putContent('/durable', '');
    expect(statSync(join(dir, 'durable')).nlink).to.equal(1);
  });
});
