// The requests a test Berth logged (one JSON line per request, see server/logging.ts): lets an
// end-to-end test see what a real client actually sent, e.g. whether it uploaded or mounted a blob.
import type { TestBerth } from './berth.ts';

export interface LoggedRequest {
  method: string;
  path: string;
  route: string;
  status: number;
}

/** The requests Berth logged since `from` (an index into berth.logs, e.g. berth.logs.length earlier). */
export function requestsSince(berth: TestBerth, from: number): LoggedRequest[] {
  const requests: LoggedRequest[] = [];
  for (const line of berth.logs.slice(from)) {
    let entry: Partial<LoggedRequest> & { msg?: string };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue; // not a log line
    }
    if (entry.msg === 'request') requests.push(entry as LoggedRequest);
  }
  return requests;
}

/** Blob uploads that completed (PUT to an upload session answered 201). */
export function completedUploads(requests: LoggedRequest[]): LoggedRequest[] {
  return requests.filter((r) => r.route === 'upload' && r.method === 'PUT' && r.status === 201);
}

/** Cross-repository mounts that succeeded (POST …/blobs/uploads/?mount= answered 201). */
export function mounts(requests: LoggedRequest[]): LoggedRequest[] {
  return requests.filter((r) => r.route === 'uploads' && r.method === 'POST' && r.status === 201);
}
