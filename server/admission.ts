// UploadAdmission: how many upload requests may stream their bytes into this process at once
// (BERTH_MAX_CONCURRENT_UPLOADS). Past the limit a client is told to come back rather than queued, so the
// memory and disk bandwidth that uploads take stay bounded.
import { RegistryError } from './errors.ts';

/** Told when an upload begins and ends streaming (the in-progress gauge of the metrics). */
export interface StreamingObserver {
  uploadStarted(): void;
  uploadEnded(): void;
}

export class UploadAdmission {
  private streaming = 0;

  /** `limit` 0: no limit. */
  constructor(
    private readonly limit: number,
    private readonly observer?: StreamingObserver,
  ) {}

  /** Runs `fn` holding a slot for its whole run; without a free slot, refuses with TOO_MANY_REQUESTS. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.limit > 0 && this.streaming >= this.limit) {
      throw new RegistryError('TOO_MANY_REQUESTS', `at most ${this.limit} uploads are streamed at once`, null, {
        headers: { 'Retry-After': '1' },
      });
    }
    this.streaming++;
    this.observer?.uploadStarted();
    try {
      return await fn();
    } finally {
      this.streaming--;
      this.observer?.uploadEnded();
    }
  }
}
