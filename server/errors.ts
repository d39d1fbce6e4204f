// RegistryError: the only kind of failure that reaches a client, shaped as the distribution-spec error body;
// and fromStorage, the one place where storage's own failures become the spec's codes, statuses and headers.
import {
  InvalidPathError,
  isStorageFailure,
  PathNotFoundError,
  StorageError,
  type StorageFault,
  type UploadPosition,
} from '../storage/index.ts';

export type ErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOO_MANY_REQUESTS'
  | 'PAGINATION_NUMBER_INVALID'
  | 'UNAVAILABLE'
  | 'UNKNOWN';

const STATUS: Record<ErrorCode, number> = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOO_MANY_REQUESTS: 429,
  PAGINATION_NUMBER_INVALID: 400,
  UNAVAILABLE: 503,
  UNKNOWN: 500,
};

// The messages are the spec's own wording for each code.
const MESSAGE: Record<ErrorCode, string> = {
  BLOB_UNKNOWN: 'blob unknown to registry',
  BLOB_UPLOAD_INVALID: 'blob upload invalid',
  BLOB_UPLOAD_UNKNOWN: 'blob upload unknown to registry',
  DIGEST_INVALID: 'provided digest did not match uploaded content',
  MANIFEST_BLOB_UNKNOWN: 'manifest references a manifest or blob unknown to registry',
  MANIFEST_INVALID: 'manifest invalid',
  MANIFEST_UNKNOWN: 'manifest unknown to registry',
  NAME_INVALID: 'invalid repository name',
  NAME_UNKNOWN: 'repository name not known to registry',
  SIZE_INVALID: 'provided length did not match content length',
  UNAUTHORIZED: 'authentication required',
  DENIED: 'requested access to the resource is denied',
  UNSUPPORTED: 'the operation is unsupported',
  TOO_MANY_REQUESTS: 'too many requests',
  PAGINATION_NUMBER_INVALID: 'invalid number of results requested',
  UNAVAILABLE: 'service unavailable',
  UNKNOWN: 'unknown error',
};

export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly detail: unknown;
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message?: string,
    detail?: unknown,
    options: { status?: number; headers?: Record<string, string> } = {},
  ) {
    super(message ?? MESSAGE[code]);
    this.name = 'RegistryError';
    this.code = code;
    this.detail = detail ?? null;
    this.status = options.status ?? STATUS[code];
    this.headers = options.headers ?? {};
  }

  body(): { errors: Array<{ code: string; message: string; detail: unknown }> } {
    return { errors: [{ code: this.code, message: this.message, detail: this.detail }] };
  }
}

export function isRegistryError(err: unknown): err is RegistryError {
  return err instanceof RegistryError;
}

/** Where a path is reached from outside: on the public URL when one is set, else relative. */
export function publicLocation(publicUrl: string | undefined, path: string): string {
  return publicUrl ? new URL(path, publicUrl).toString() : path;
}

/** Inclusive range of what an upload has stored, as Distribution writes it ("0-0" for an empty upload). */
export function uploadRange(offset: number): string {
  return `0-${offset > 0 ? offset - 1 : 0}`;
}

/** The headers that tell a client where its upload session is and how far it got. */
export function uploadSessionHeaders(upload: UploadPosition, publicUrl: string | undefined): Record<string, string> {
  return {
    Location: publicLocation(publicUrl, `/v2/${upload.name}/blobs/uploads/${upload.id}`),
    Range: uploadRange(upload.offset),
    'Docker-Upload-UUID': upload.id,
  };
}

/** 416: the chunk does not continue the session where it stands; the headers say where it does. */
export function rangeNotSatisfiable(upload: UploadPosition, reason: string, publicUrl: string | undefined): RegistryError {
  return new RegistryError('BLOB_UPLOAD_INVALID', 'requested range not satisfiable', reason, {
    status: 416,
    headers: uploadSessionHeaders(upload, publicUrl),
  });
}

const RETRY_SOON = { headers: { 'Retry-After': '5' } };

function fromFault(fault: StorageFault, message: string, publicUrl: string | undefined): RegistryError {
  switch (fault.kind) {
    case 'NameInvalid':
      return new RegistryError('NAME_INVALID', message, { name: fault.name });
    case 'DigestInvalid':
      return new RegistryError('DIGEST_INVALID', message, { digest: fault.digest });
    case 'DigestMismatch':
      return new RegistryError('DIGEST_INVALID', message, { expected: fault.expected, actual: fault.actual });
    case 'UploadUnknown':
      return new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { id: fault.id });
    case 'RangeInvalid':
      return rangeNotSatisfiable(fault.upload, fault.reason, publicUrl);
    case 'SizeInvalid':
      return new RegistryError('SIZE_INVALID', message);
    case 'ManifestInvalid':
      return new RegistryError('MANIFEST_INVALID', message, fault.detail);
    case 'ManifestBlobUnknown':
      return new RegistryError('MANIFEST_BLOB_UNKNOWN', undefined, { digests: fault.digests });
    case 'TagImmutable':
      return new RegistryError('DENIED', message, { name: fault.name, tag: fault.tag, current: fault.current });
    case 'QuotaExceeded': {
      const { namespace, usageBytes, limitBytes, requestedBytes } = fault;
      return new RegistryError('DENIED', message, { namespace, usageBytes, limitBytes, requestedBytes });
    }
    case 'PolicyUnreadable':
      return new RegistryError('UNAVAILABLE', message);
    case 'Unavailable':
      return new RegistryError('UNAVAILABLE', message, { reason: fault.reason }, RETRY_SOON);
    case 'Busy':
      return new RegistryError('UNAVAILABLE', message, { key: fault.key }, RETRY_SOON);
  }
}

/**
 * The spec's answer to a failure of storage (its faults, and the driver's missing path, bad path or
 * outage), or undefined when `err` is none of those. `publicUrl` places the Location of a 416.
 */
export function fromStorage(err: unknown, publicUrl?: string): RegistryError | undefined {
  if (err instanceof StorageError) return fromFault(err.fault, err.message, publicUrl);
  // Removed between the check and the read (a concurrent delete): it is gone, say so.
  if (err instanceof PathNotFoundError) return new RegistryError('BLOB_UNKNOWN', undefined, null);
  if (err instanceof InvalidPathError) return new RegistryError('NAME_INVALID', 'invalid name or reference');
  // The storage behind Berth failed or stalled (after the retries that are safe): nothing was made
  // visible, and the client may try again.
  if (isStorageFailure(err)) return new RegistryError('UNAVAILABLE', 'storage is unavailable; try again shortly', null, RETRY_SOON);
  return undefined;
}
