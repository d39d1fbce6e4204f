// A small HTTP proxy in front of a real server (s3rver, a Berth) that injects the faults a real network
// or store can show but those servers never do on their own: error answers, requests that stall
// without an answer, and connections cut in the middle of a response body.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface FaultRule {
  /** Which requests the rule hits, e.g. (m, url) => m === 'GET'. */
  match(method: string, url: string): boolean;
  /**
   * An error answer; 'stall': no answer; 'ignoreRange': forwarded without its Range header, as to a server
   * that answers every GET whole; cutAfterBytes: the response body's first bytes, then the connection
   * drops; cutRequestAfterBytes: the request body's first bytes reach the server, then both connections
   * drop; a Hold (below).
   */
  fault: { status: number; code: string; headers?: Record<string, string> } | 'stall' | 'ignoreRange' | { cutAfterBytes: number } | { cutRequestAfterBytes: number } | Hold;
  /** How many matching requests it still hits. */
  remaining: number;
}

/**
 * A response body passed up to `holdAfterBytes`, then held until `until` resolves: the rest follows then
 * (or, with `thenCut`, the connection is dropped), as a slow or stalling upstream would.
 */
export interface Hold {
  holdAfterBytes: number;
  until: Promise<void>;
  thenCut?: boolean;
}

export interface FaultProxy {
  url: string;
  rules: FaultRule[];
  /** Requests the rules hit so far. */
  injected: number;
  /** Response bodies held (Hold) right now. */
  holding: number;
  /** Every request seen, with its Range and Content-Range headers and when it came (ms). */
  requests: Array<{ method: string; url: string; range?: string; contentRange?: string; at: number }>;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /**
   * Send the upstream's own Host, as a CDN does towards its origin (so that a signature over the host,
   * e.g. a presigned S3 URL's, still holds); by default the client's Host passes through.
   */
  originHost?: boolean;
}

/** Passes the first bytes, holds the rest until released, then sends it (or cuts the connection). */
function holdBody(upstreamRes: IncomingMessage, res: ServerResponse, hold: Hold, proxy: FaultProxy): void {
  let left = hold.holdAfterBytes; // -1 once the hold is over
  upstreamRes.on('data', (chunk: Buffer) => {
    if (left < 0 || chunk.length <= left) {
      if (left >= 0) left -= chunk.length;
      res.write(chunk);
      return;
    }
    res.write(chunk.subarray(0, left));
    const rest = chunk.subarray(left);
    left = -1;
    upstreamRes.pause();
    proxy.holding++;
    void hold.until.then(() => {
      proxy.holding--;
      if (hold.thenCut) {
        upstreamRes.destroy();
        res.socket?.destroy();
        return;
      }
      res.write(rest);
      upstreamRes.resume();
    });
  });
  upstreamRes.on('end', () => res.end());
}

export async function startFaultProxy(upstream: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  const proxy: FaultProxy = { url: '', rules: [], injected: 0, holding: 0, requests: [], close: async () => {} };

  const server: Server = createServer((req: IncomingMessage, res) => {
    proxy.requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers['content-range'] ? { contentRange: req.headers['content-range'] } : {}),
      at: Date.now(),
    });
    const rule = proxy.rules.find((r) => r.remaining > 0 && r.match(req.method ?? '', req.url ?? ''));
    if (rule) {
      rule.remaining--;
      proxy.injected++;
    }
    const fault = rule?.fault;
    let cutAfter: number | undefined;
    let cutRequest: number | undefined;
    let hold: Hold | undefined;
    const headers = { ...req.headers, ...(options.originHost ? { host: target.host } : {}) };
    if (fault === 'ignoreRange') {
      delete headers.range;
    } else if (typeof fault === 'object' && 'cutRequestAfterBytes' in fault) {
      cutRequest = fault.cutRequestAfterBytes;
    } else if (typeof fault === 'object' && 'cutAfterBytes' in fault) {
      cutAfter = fault.cutAfterBytes;
    } else if (typeof fault === 'object' && 'holdAfterBytes' in fault) {
      hold = fault;
    } else if (fault) {
      req.resume(); // read the body off the wire, as a real store would
      if (fault === 'stall') return; // never answer
      const { status, code, headers: extra } = fault;
      req.on('end', () => {
        res.writeHead(status, { 'Content-Type': 'application/xml', ...extra });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test</Message></Error>`);
      });
      return;
    }
    const forward = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers,
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        if (hold) return void holdBody(upstreamRes, res, hold, proxy);
        if (cutAfter === undefined) return void upstreamRes.pipe(res);
        // Pass the first bytes of the body, then drop the connection as a broken network would.
        let left = cutAfter;
        upstreamRes.on('data', (chunk: Buffer) => {
          if (left <= 0) return;
          const last = chunk.length >= left;
          // Dropped once the bytes are on the wire: destroying the socket at once also dropped the writes
          // still queued in it, so a busy machine passed fewer bytes than the rule says, even none.
          res.write(chunk.subarray(0, left), last ? () => res.socket?.destroy() : undefined);
          left -= chunk.length;
          if (last) upstreamRes.destroy();
        });
        upstreamRes.on('end', () => res.end());
      },
    );
    forward.on('error', () => res.destroy());
    if (cutRequest === undefined) return void req.pipe(forward);
    // Pass the body's first bytes to the server, then drop both connections, as a broken network would.
    let left = cutRequest;
    req.on('data', (chunk: Buffer) => {
      if (left <= 0) return;
      const last = chunk.length >= left;
      forward.write(chunk.subarray(0, left), last ? () => {
        forward.destroy();
        req.socket.destroy();
      } : undefined);
      left -= chunk.length;
    });
    req.on('end', () => left > 0 && forward.end());
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
