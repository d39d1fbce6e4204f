import { expect } from 'chai';
import { fromStorage, RegistryError, type ErrorCode } from '../../server/errors.ts';
import {
  InvalidPathError,
  PathNotFoundError,
  StorageError,
  StorageUnavailableError,
  type FaultKind,
  type FaultOf,
} from '../../storage/index.ts';

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

describe('fromStorage: storage faults become the spec\'s codes, statuses and headers in one place', () => {
  const upload = { id: '0b4c5a36-5d7e-4f7e-9d54-3c1c1b0c6a11', name: 'team/app', offset: 5 };
  // One case per kind: a kind added to storage without an answer here fails to compile.
  const cases: { [K in FaultKind]: [FaultOf<K>, ErrorCode, number] } = {
    NameInvalid: [{ kind: 'NameInvalid', name: 'A' }, 'NAME_INVALID', 400],
    DigestInvalid: [{ kind: 'DigestInvalid', digest: 'md5:x' }, 'DIGEST_INVALID', 400],
    DigestMismatch: [{ kind: 'DigestMismatch', expected: 'sha256:a', actual: 'sha256:b' }, 'DIGEST_INVALID', 400],
    UploadUnknown: [{ kind: 'UploadUnknown', id: 'x' }, 'BLOB_UPLOAD_UNKNOWN', 404],
    RangeInvalid: [{ kind: 'RangeInvalid', upload, reason: 'chunk starts at 9' }, 'BLOB_UPLOAD_INVALID', 416],
    SizeInvalid: [{ kind: 'SizeInvalid', announced: 3, received: 4 }, 'SIZE_INVALID', 400],
    ManifestInvalid: [{ kind: 'ManifestInvalid', detail: null }, 'MANIFEST_INVALID', 400],
    ManifestBlobUnknown: [{ kind: 'ManifestBlobUnknown', digests: ['sha256:a'] }, 'MANIFEST_BLOB_UNKNOWN', 400],
    TagImmutable: [{ kind: 'TagImmutable', name: 'team/app', tag: 'v1', current: 'sha256:a' }, 'DENIED', 403],
    QuotaExceeded: [{ kind: 'QuotaExceeded', namespace: 'team', usageBytes: 1, limitBytes: 2, requestedBytes: 3 }, 'DENIED', 403],
    PolicyUnreadable: [{ kind: 'PolicyUnreadable', scope: 'team' }, 'UNAVAILABLE', 503],
    Unavailable: [{ kind: 'Unavailable', reason: 'ECONNREFUSED' }, 'UNAVAILABLE', 503],
    Busy: [{ kind: 'Busy', key: 'tag:team/app:v1' }, 'UNAVAILABLE', 503],
  };
  for (const [kind, [fault, code, status]] of Object.entries(cases)) {
    it(`${kind} → ${code} ${status}`, () => {
      const error = fromStorage(new StorageError(fault, 'what happened'));
      expect(error).to.be.instanceOf(RegistryError);
      expect(error!.code).to.equal(code);
      expect(error!.status).to.equal(status);
    });
  }

  it('a range fault names the session in Location (on the public URL when set), Range and Docker-Upload-UUID', () => {
    const fault = new StorageError({ kind: 'RangeInvalid', upload, reason: 'chunk starts at 9' }, 'x');
    expect(fromStorage(fault)!.headers).to.deep.equal({
      Location: `/v2/team/app/blobs/uploads/${upload.id}`,
      Range: '0-4',
      'Docker-Upload-UUID': upload.id,
    });
    expect(fromStorage(fault, 'https://registry.example/')!.headers.Location).to.equal(
      `https://registry.example/v2/team/app/blobs/uploads/${upload.id}`,
    );
  });

  it('the facts go to the detail; shared state away says when to come back', () => {
    const quota = fromStorage(new StorageError(cases.QuotaExceeded[0], 'over'))!;
    expect(quota.body().errors[0]).to.deep.equal({
      code: 'DENIED',
      message: 'over',
      detail: { namespace: 'team', usageBytes: 1, limitBytes: 2, requestedBytes: 3 },
    });
    expect(fromStorage(new StorageError(cases.Unavailable[0], 'away'))!.headers).to.deep.equal({ 'Retry-After': '5' });
  });

  it('the driver\'s errors: a missing path is BLOB_UNKNOWN, a bad one NAME_INVALID, an outage UNAVAILABLE; others are not storage\'s', () => {
    expect(fromStorage(new PathNotFoundError('/blobs/x'))!.code).to.equal('BLOB_UNKNOWN');
    expect(fromStorage(new InvalidPathError('/../x'))!.code).to.equal('NAME_INVALID');
    const outage = fromStorage(new StorageUnavailableError('down'))!;
    expect([outage.code, outage.status, outage.headers['Retry-After']]).to.deep.equal(['UNAVAILABLE', 503, '5']);
    expect(fromStorage(new Error('boom'))).to.equal(undefined);
  });
});
