import { expect } from 'chai';
import { RegistryError, type ErrorCode } from '../../server/errors.ts';

describe('RegistryError: every spec code maps to its status and the spec body', () => {
  const expected: Array<[ErrorCode, number]> = [
    ['BLOB_UNKNOWN', 404],
    ['BLOB_UPLOAD_INVALID', 400],
    ['BLOB_UPLOAD_UNKNOWN', 404],
    ['DIGEST_INVALID', 400],
    ['MANIFEST_BLOB_UNKNOWN', 400],
    ['MANIFEST_INVALID', 400],
    ['MANIFEST_UNKNOWN', 404],
    ['NAME_INVALID', 400],
    ['NAME_UNKNOWN', 404],
    ['SIZE_INVALID', 400],
    ['UNAUTHORIZED', 401],
    ['DENIED', 403],
    ['UNSUPPORTED', 405],
    ['TOO_MANY_REQUESTS', 429],
  ];
  for (const [code, status] of expected) {
    it(`${code} → ${status}`, () => {
      const error = new RegistryError(code, undefined, { why: 'test' });
      expect(error.status).to.equal(status);
      const body = error.body();
      expect(body.errors).to.have.length(1);
      expect(body.errors[0]).to.deep.equal({ code, message: error.message, detail: { why: 'test' } });
      expect(error.message).to.be.a('string').and.not.equal('');
    });
  }

  it('a status and headers can be set for a code where HTTP needs another (416, 413, WWW-Authenticate)', () => {
    const error = new RegistryError('UNAUTHORIZED', undefined, null, { headers: { 'WWW-Authenticate': 'Bearer realm="x"' } });
    expect(error.headers).to.deep.equal({ 'WWW-Authenticate': 'Bearer realm="x"' });
    expect(new RegistryError('BLOB_UPLOAD_INVALID', 'range', null, { status: 416 }).status).to.equal(416);
    expect(new RegistryError('DENIED').body().errors[0]!.detail).to.equal(null);
  });
});
