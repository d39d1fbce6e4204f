// The replication room's failures. ReplicationError: a request about rules the caller got wrong (the API
// answers 400/404/409, the command exits 2 or 1). RunStopped: why a run ended before its work was done,
// in words for its status (a full disk, a refusal that asking again will not change, a remote that
// stayed unavailable through every attempt).

export type ReplicationErrorCode = 'INVALID' | 'NOT_FOUND' | 'EXISTS' | 'RUNNING' | 'TOO_MANY';

export class ReplicationError extends Error {
  constructor(
    readonly code: ReplicationErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ReplicationError';
  }
}

/** storage-full: the destination has no room; refused: a 4xx that will not change; unavailable: attempts used up. */
export type StopReason = 'storage-full' | 'refused' | 'unavailable';

export class RunStopped extends Error {
  constructor(
    readonly reason: StopReason,
    message: string,
  ) {
    super(message);
    this.name = 'RunStopped';
  }
}
