// The audit log: every authentication and authorisation decision, as one JSON line each (who, what,
// which repository, allowed or not), on the server's log or in a file of its own.
export interface AuditEvent {
  /** The account name, `anonymous`, or the name a failed login tried. */
  who: string;
  /** login, token, pull, push, delete, catalog, or an admin operation (user add, org member, …). */
  action: string;
  repository?: string;
  allowed: boolean;
  /** The actions granted, when a token was issued. */
  granted?: string[];
  reason?: string;
  address?: string;
}

export interface AuditSink {
  info(fields: Record<string, unknown>, message: string): void;
}

export class AuditLog {
  constructor(private readonly sink: AuditSink) {}

  record(event: AuditEvent): void {
    this.sink.info({ audit: event }, 'auth decision');
  }
}
