// Ids the server makes are typed on command lines (`berth token revoke ID`): none may look like an option.
import { expect } from 'chai';
import { newId } from '../../auth/secrets.ts';

describe('generated ids', () => {
  it('never start with "-" (one in 64 did, and berth token revoke took it for an option)', () => {
    const ids = Array.from({ length: 10_000 }, () => newId());
    expect(ids.filter((id) => id.startsWith('-'))).to.deep.equal([]);
    expect(new Set(ids).size).to.equal(ids.length);
    expect(ids.every((id) => /^[A-Za-z0-9_-]{12}$/.test(id))).to.equal(true);
  });
});
