// A token realm on another host (127.0.0.2) that passes requests on to a registry's own realm and records
// the headers it is sent: the test sees whether credentials went where they must not.
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A token realm on 127.0.0.2 (another host) that passes requests on to `target` and records their headers. */
export async function startRealm(target: () => string): Promise<{ url: string; seen: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const seen: IncomingHttpHeaders[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(req.headers);
    const forward = request(`${target()}${req.url}`, { method: req.method, headers: { ...req.headers, host: new URL(target()).host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', () => resolve()));
  return {
    url: `http://127.0.0.2:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
