// Every failure the runtime client reports to its user: one base type, so the command line can print
// the message alone (no stack) and choose the exit code.
export class ClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidReferenceError extends ClientError {}

/** The registry answered with an error (the spec's JSON errors, when it sent them, are in the message). */
export class RegistryRequestError extends ClientError {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
    /** The registry's Retry-After in seconds (429, 503), when it sent one. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

/**
 * The registry's answer does not match the request: a status, Content-Range, Content-Length or digest
 * other than the one asked for, or a redirect loop. Asking again would get the same answer.
 */
export class RegistryResponseError extends ClientError {}

/** Bytes that do not hash to the digest that names them: nothing of them is kept. */
export class DigestMismatchError extends ClientError {}

/** A layer entry that would write or remove outside its place in the root filesystem. */
export class PathEscapeError extends ClientError {}

/** An image that unpacks to more bytes or entries than its limits allow: nothing of it is kept. */
export class UnpackLimitError extends ClientError {}

/** No manifest for the wanted platform, or an image this host cannot run. */
export class PlatformError extends ClientError {}

/** A reference that is not in the local store. */
export class ImageNotFoundError extends ClientError {}
