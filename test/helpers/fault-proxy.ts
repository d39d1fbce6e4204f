// A small HTTP proxy in front of a real S3 endpoint (s3rver) that injects the faults a real store can
// show but s3rver never does on its own: error answers and requests that stall without an answer.
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface FaultRule {
  /** Which requests the rule hits, e.g. (m, url) => m === 'GET'. */
  match(method: string, url: string): boolean;
  fault: { status: number; code: string } | 'stall';
  /** How many matching requests it still hits. */
  remaining: number;
}

export interface FaultProxy {
  url: string;
  rules: FaultRule[];
  /** Requests the rules hit so far. */
  injected: number;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  const proxy: FaultProxy = { url: '', rules: [], injected: 0, close: async () => {} };

  const server: Server = createServer((req: IncomingMessage, res) => {
    const rule = proxy.rules.find((r) => r.remaining > 0 && r.match(req.method ?? '', req.url ?? ''));
    if (rule) {
      rule.remaining--;
      proxy.injected++;
      req.resume(); // read the body off the wire, as a real store would
      if (rule.fault === 'stall') return; // never answer
      const { status, code } = rule.fault;
      req.on('end', () => {
        res.writeHead(status, { 'Content-Type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test</Message></Error>`);
      });
      return;
    }
    const forward = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return proxy;
}
