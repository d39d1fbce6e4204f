// UploadAdmission: the upload concurrency limit is its own small thing (not the metrics): a slot per
// running upload, refused past the limit with TOO_MANY_REQUESTS, given back however the upload ends.
import { expect } from 'chai';
import { UploadAdmission } from '../../server/admission.ts';
import { RegistryError } from '../../server/errors.ts';

describe('unit: upload admission', () => {
  it('refuses past the limit, gives the slot back on success and on failure, and tells its observer', async () => {
    const seen: string[] = [];
    const admission = new UploadAdmission(1, { uploadStarted: () => seen.push('start'), uploadEnded: () => seen.push('end') });
    let release!: () => void;
    const first = admission.run(() => new Promise<string>((resolve) => (release = () => resolve('done'))));
    const refused = await admission.run(async () => 'second').catch((err: unknown) => err);
    expect(refused).to.be.instanceOf(RegistryError);
    expect((refused as RegistryError).code).to.equal('TOO_MANY_REQUESTS');
    expect((refused as RegistryError).headers['Retry-After']).to.equal('1');
    release();
    expect(await first).to.equal('done');
    await admission.run(async () => Promise.reject(new Error('broken body'))).catch(() => {});
    expect(await admission.run(async () => 'after a failure')).to.equal('after a failure');
    expect(seen).to.deep.equal(['start', 'end', 'start', 'end', 'start', 'end']);
  });

  it('limit 0 admits everything', async () => {
    const admission = new UploadAdmission(0);
    const all = await Promise.all(Array.from({ length: 5 }, (_, i) => admission.run(async () => i)));
    expect(all).to.deep.equal([0, 1, 2, 3, 4]);
  });
});
