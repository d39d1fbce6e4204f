import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { RunningDigest } from '../../storage/hasher.ts';

describe('RunningDigest: sha256 on the hashing thread', () => {
  it('matches node:crypto over many chunks, bounded in flight, and can be read more than once', async () => {
    const expected = createHash('sha256');
    const digest = new RunningDigest();
    for (let i = 0; i < 400; i++) {
      // Fresh buffers, as a socket delivers them: update() keeps a reference until its batch is sent.
      const chunk = Buffer.alloc(64 * 1024, i % 251);
      expected.update(chunk);
      await digest.update(chunk);
    }
    const first = await digest.hex();
    expect(first).to.equal(expected.copy().digest('hex'));
    await digest.update(Buffer.from('more'));
    expected.update('more');
    expect(await digest.hex()).to.equal(expected.digest('hex'));
    digest.free();
  });

  it('hashes a chunk larger than a slot of the shared memory, across slots, in order', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 12345);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 253;
    const digest = new RunningDigest();
    await digest.update(big);
    await digest.update(Buffer.from('tail'));
    expect(await digest.hex()).to.equal(createHash('sha256').update(big).update('tail').digest('hex'));
    digest.free();
  });

  it('keeps sessions apart', async () => {
    const a = new RunningDigest();
    const b = new RunningDigest();
    await a.update(Buffer.from('alpha'));
    await b.update(Buffer.from('beta'));
    expect(await a.hex()).to.equal(createHash('sha256').update('alpha').digest('hex'));
    expect(await b.hex()).to.equal(createHash('sha256').update('beta').digest('hex'));
    expect(await new RunningDigest().hex()).to.equal(createHash('sha256').digest('hex'));
  });

  it('reads a small digest without the thread, then goes on past a batch with the same result', async () => {
    const expected = createHash('sha256');
    const digest = new RunningDigest();
    await digest.update(Buffer.from('small'));
    expected.update('small');
    expect(await digest.hex()).to.equal(expected.copy().digest('hex'));
    for (let i = 0; i < 40; i++) {
      const chunk = Buffer.alloc(64 * 1024, i);
      expected.update(chunk);
      await digest.update(chunk);
    }
    expect(await digest.hex()).to.equal(expected.digest('hex'));
    digest.free();
  });
});
