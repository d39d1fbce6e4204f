// The control socket: a Unix socket in the data folder (BERTH_CONTROL_SOCKET) through which `berth gc`,
// `berth retention run` and `berth replication run` hand their job to the running server, so that they work beside it: a server
// without Redis keeps its locks and caches in memory, and only a job it runs itself cannot race its pushes.
// Only the socket's owner (the user the server runs as) and root can connect: file permissions are the
// authentication, as for Docker's and containerd's sockets. HTTP on the socket keeps it debuggable
// (`curl --unix-socket`).
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LifecycleJobs } from '../storage/index.ts';
import { ReplicationError, type Replication } from '../replication/index.ts';
import type { Logger } from './logging.ts';

const MAX_BODY_BYTES = 4096;

export interface GcJobRequest {
  dryRun?: boolean;
  deleteUntagged?: boolean;
  graceSeconds?: number;
}

export interface RetentionJobRequest {
  dryRun?: boolean;
}

/** A replication rule to run now (its run goes on after the answer, which is the run as claimed). */
export interface ReplicationJobRequest {
  rule: string;
}

class BadRequest extends Error {}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BadRequest(`the request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString() || '{}';
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BadRequest('the body is not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw err instanceof BadRequest ? err : new BadRequest('the body is not JSON');
  }
}

function flag(body: Record<string, unknown>, name: string): boolean | undefined {
  const value = body[name];
  if (value === undefined || typeof value === 'boolean') return value;
  throw new BadRequest(`${name} must be true or false`);
}

/** Serves the control socket at `path`; undefined when another process of this server already does. */
export async function listenControl(path: string, jobs: LifecycleJobs, defaultGraceSeconds: number, logger: Logger, replication?: Replication): Promise<Server | undefined> {
  const server = createServer({ requestTimeout: 0 }, (req, res) => {
    const reply = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(value, null, 2)}\n`);
    };
    void (async () => {
      const body = await readJson(req);
      if (req.method === 'POST' && req.url === '/gc') {
        const grace = body.graceSeconds ?? defaultGraceSeconds;
        if (typeof grace !== 'number' || !Number.isInteger(grace) || grace < 0) throw new BadRequest('graceSeconds must be a whole number');
        logger.info({ via: 'control socket', dryRun: flag(body, 'dryRun') === true }, 'garbage collection asked for');
        return reply(200, await jobs.collectGarbage({ dryRun: flag(body, 'dryRun'), deleteUntagged: flag(body, 'deleteUntagged'), graceSeconds: grace }));
      }
      if (req.method === 'POST' && req.url === '/retention') {
        logger.info({ via: 'control socket', dryRun: flag(body, 'dryRun') === true }, 'retention asked for');
        return reply(200, await jobs.applyRetention({ dryRun: flag(body, 'dryRun') }));
      }
      if (req.method === 'POST' && req.url === '/replication' && replication) {
        if (typeof body.rule !== 'string') throw new BadRequest('rule must be a rule\'s name');
        logger.info({ via: 'control socket', rule: body.rule }, 'replication run asked for');
        const { run, done } = await replication.begin(body.rule);
        done.catch(() => {}); // the run reports its own end
        return reply(200, run);
      }
      reply(404, { error: `no ${req.method} ${req.url} here: POST /gc, POST /retention or POST /replication` });
    })().catch((err: Error) => {
      if (err instanceof BadRequest) return reply(400, { error: err.message });
      if (err instanceof ReplicationError) return reply(err.code === 'NOT_FOUND' ? 404 : err.code === 'RUNNING' ? 409 : 400, { error: err.message });
      logger.error({ err: err.message }, 'control socket job failed');
      reply(500, { error: err.message });
    });
  });
  mkdirSync(dirname(path), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ path, readableAll: false, writableAll: false }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt > 0) throw err;
      // Another worker of this server serves it, or a server that died left it behind.
      if (await answers(path)) return undefined;
      unlinkSync(path);
    }
  }
  chmodSync(path, 0o600);
  server.unref();
  return server;
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export type ControlReply = { ok: true; result: unknown } | { ok: false; status: number; error: string };

/**
 * Asks the server on the control socket to run a job; undefined when no server listens there (the caller
 * then decides whether it may run the job itself).
 */
export function askServer(
  path: string,
  job: 'gc' | 'retention' | 'replication',
  body: GcJobRequest | RetentionJobRequest | ReplicationJobRequest,
): Promise<ControlReply | undefined> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: path, path: `/${job}`, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const value = JSON.parse(Buffer.concat(chunks).toString() || 'null') as unknown;
        if (res.statusCode === 200) resolve({ ok: true, result: value });
        else resolve({ ok: false, status: res.statusCode ?? 0, error: (value as { error?: string } | null)?.error ?? `status ${res.statusCode}` });
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(undefined);
      else reject(err);
    });
    req.end(JSON.stringify(body));
  });
}
