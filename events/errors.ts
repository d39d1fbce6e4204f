// The webhooks' own errors: what a caller asked for that cannot be (the web and the CLI turn them into
// 4xx answers and exit codes); never a status code here.
export type WebhookErrorCode =
  /** The endpoint's URL, namespace or event types are not acceptable. */
  | 'INVALID'
  /** The destination resolves to a private, loopback or link-local address that BERTH_WEBHOOK_ALLOW does not name. */
  | 'DESTINATION_REFUSED'
  /** No such endpoint. */
  | 'NOT_FOUND'
  /** As many endpoints as a namespace (or the registry) may have. */
  | 'TOO_MANY';

export class WebhookError extends Error {
  constructor(
    readonly code: WebhookErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'WebhookError';
  }
}
