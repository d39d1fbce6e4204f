// How long a connection may keep the server waiting: for its headers, between requests, and for the
// next bytes of a request body. Slow or silent clients are cut so that they cannot hold sockets (and the
// registry's attention) for ever, while a long upload that keeps moving runs as long as it needs.
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { RegistryError } from './errors.ts';

/** Node's own limits: headers must arrive in time; an idle keep-alive connection is closed. */
export function connectionOptions(config: Config): ServerOptions {
  return {
    headersTimeout: config.headersTimeoutSeconds * 1000,
    // Longer than the 60 s idle time of the usual load balancers, so that they never reuse a connection we
    // are closing at that moment.
    keepAliveTimeout: config.idleTimeoutSeconds * 1000,
    // No whole-request limit: a multi-GiB layer takes as long as it takes. Bodies are held to progress
    // instead (watchBodyProgress).
    requestTimeout: 0,
    // Node looks for connections past their header deadline this often (30 s by default, which would let
    // a slow client overstay a short limit by that much).
    connectionsCheckingInterval: Math.min(1000, config.headersTimeoutSeconds * 250),
  };
}

interface Watched {
  req: IncomingMessage;
  res: ServerResponse;
  windowStart: number;
  bytesAtStart: number;
}

/**
 * Cuts a request whose body does not progress: in every window of `bodyTimeoutSeconds` that the server
 * spends waiting for it, the body must bring at least `bodyMinBytesPerSecond` × window bytes (and at least
 * one). Time in which the server itself is behind (bytes it received are still waiting to be read: a slow
 * disk or S3) does not count against the client. One timer for the whole server, not one per request.
 */
export function watchBodyProgress(server: Server, config: Config, logger: Logger): () => void {
  const windowMs = config.bodyTimeoutSeconds * 1000;
  const minBytes = Math.max(1, Math.floor(config.bodyMinBytesPerSecond * config.bodyTimeoutSeconds));
  const watched = new Set<Watched>();

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.complete) return;
    const entry: Watched = { req, res, windowStart: Date.now(), bytesAtStart: req.socket.bytesRead };
    watched.add(entry);
    // Every request ends one way or the other; the set never holds more than the open requests.
    const forget = () => watched.delete(entry);
    req.once('end', forget);
    req.once('close', forget);
  });

  const tick = setInterval(() => {
    const now = Date.now();
    for (const entry of watched) {
      const { req, res } = entry;
      if (req.complete || req.destroyed) {
        watched.delete(entry);
        continue;
      }
      if (req.readableLength > 0) {
        // Bytes are waiting for us, not the other way round: the client gets a fresh window.
        entry.windowStart = now;
        entry.bytesAtStart = req.socket.bytesRead;
        continue;
      }
      if (now - entry.windowStart < windowMs) continue;
      const received = req.socket.bytesRead - entry.bytesAtStart;
      if (received >= minBytes) {
        entry.windowStart = now;
        entry.bytesAtStart = req.socket.bytesRead;
        continue;
      }
      watched.delete(entry);
      logger.info({ method: req.method, path: req.url?.slice(0, 300), address: req.socket.remoteAddress, received, windowMs }, 'request body stalled; connection cut');
      cut(req, res, `the request body brought ${received} bytes in ${config.bodyTimeoutSeconds} s (at least ${minBytes} expected)`);
    }
  }, Math.min(1000, windowMs / 4));
  tick.unref();
  return () => clearInterval(tick);
}

/** Answers 408 when nothing was answered yet, then closes the connection (the rest of the body is not read). */
function cut(req: IncomingMessage, res: ServerResponse, detail: string): void {
  if (!res.headersSent) {
    const error = new RegistryError('SIZE_INVALID', 'the request body stopped arriving', detail, { status: 408 });
    const body = JSON.stringify(error.body());
    res.writeHead(408, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
    res.end(body, () => req.socket.destroy());
    // A client that never reads the answer must not keep the socket either.
    setTimeout(() => req.socket.destroy(), 1000).unref();
    return;
  }
  req.socket.destroy();
}
