// The young collection that frees request-body buffers before V8 answers their external memory with a
// full mark-compact (see server/young-buffers.ts): it must really run, on this Node.
import { expect } from 'chai';
import { getHeapSpaceStatistics } from 'node:v8';
import { bodyBytesArrived } from '../../server/young-buffers.ts';

const RECLAIM_EVERY_BYTES = 16 * 1024 * 1024;

function youngBytesInUse(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
}

describe('young collections for request bodies', () => {
  it('empties the young generation once 16 MiB of body have arrived', () => {
    // Dead objects in the young generation, which only a collection removes.
    let garbage: Array<{ n: number }> | undefined = Array.from({ length: 20_000 }, (_, n) => ({ n }));
    garbage = undefined;
    const before = youngBytesInUse();
    expect(before, 'young garbage to collect').to.be.greaterThan(200_000);
    bodyBytesArrived(RECLAIM_EVERY_BYTES);
    expect(youngBytesInUse()).to.be.lessThan(before / 2);
    expect(garbage).to.equal(undefined);
  });

  it('leaves smaller amounts to V8', () => {
    // Whatever the counter holds, one byte short of a full count after a collection does not collect.
    bodyBytesArrived(RECLAIM_EVERY_BYTES);
    let garbage: Array<{ n: number }> | undefined = Array.from({ length: 20_000 }, (_, n) => ({ n }));
    garbage = undefined;
    const before = youngBytesInUse();
    bodyBytesArrived(RECLAIM_EVERY_BYTES - 1);
    expect(youngBytesInUse()).to.be.at.least(before);
    expect(garbage).to.equal(undefined);
  });
});
