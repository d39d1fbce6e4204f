// Storage's own failures: one vocabulary for every store, each kind carrying the facts of what went wrong
// and nothing of HTTP. The server turns them into the spec's codes, statuses and headers in one place
// (server/errors.ts); the CLI prints their message. The driver's PathNotFoundError, InvalidPathError and
// StorageUnavailableError (driver.ts) stay beside the driver contract they belong to.

/** The session an upload fault is about: enough to say where it is and how far it got. */
export interface UploadPosition {
  readonly id: string;
  readonly name: string;
  /** Bytes stored so far. */
  readonly offset: number;
}

export type StorageFault =
  /** Not a repository name the spec allows. */
  | { kind: 'NameInvalid'; name: string }
  /** Not a digest Berth accepts (sha256 or sha512, lowercase hex). */
  | { kind: 'DigestInvalid'; digest: string }
  /** Content whose digest is not the one it was announced with. */
  | { kind: 'DigestMismatch'; expected: string; actual: string }
  /** No such upload session (or not the caller's). */
  | { kind: 'UploadUnknown'; id: string }
  /** A chunk that does not continue the session where it stands. */
  | { kind: 'RangeInvalid'; upload: UploadPosition; reason: string }
  /** A chunk whose bytes are not as many as were announced. */
  | { kind: 'SizeInvalid'; announced: number; received: number }
  /** A manifest that does not parse or does not match what it describes. */
  | { kind: 'ManifestInvalid'; detail: unknown }
  /** A manifest naming blobs or manifests the repository does not hold. */
  | { kind: 'ManifestBlobUnknown'; digests: string[] }
  /** A tag an immutability policy keeps from moving. */
  | { kind: 'TagImmutable'; name: string; tag: string; current: string }
  /** Bytes that would take a namespace past its quota. */
  | { kind: 'QuotaExceeded'; namespace: string; usageBytes: number; limitBytes: number; requestedBytes: number }
  /** A stored policy nobody can read: writes it governs are refused rather than let through. */
  | { kind: 'PolicyUnreadable'; scope: string }
  /** The shared state (locks, generations) cannot be reached; nothing was written. */
  | { kind: 'Unavailable'; reason: string }
  /** A lock another writer held for longer than a caller waits. */
  | { kind: 'Busy'; key: string };

export type FaultKind = StorageFault['kind'];
export type FaultOf<K extends FaultKind> = Extract<StorageFault, { kind: K }>;

export class StorageError extends Error {
  readonly fault: StorageFault;

  constructor(fault: StorageFault, message: string) {
    super(message);
    this.name = 'StorageError';
    this.fault = fault;
  }
}

/** Whether `err` is a storage fault, and (with `kind`) of that kind. */
export function isStorageError<K extends FaultKind = FaultKind>(err: unknown, kind?: K): err is StorageError & { fault: FaultOf<K> } {
  return err instanceof StorageError && (kind === undefined || err.fault.kind === kind);
}
