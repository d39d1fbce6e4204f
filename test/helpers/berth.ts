// Starts a real Berth server process for a test, on a free loopback port, with its own data folder.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { FilesystemDriver, type StorageDriver } from '../../storage/index.ts';
import { S3Driver } from '../../storage/driver/s3/index.ts';
import { Registry } from './registry.ts';
import type { TestS3 } from './s3.ts';
import { berthArgs } from './built.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

export interface TestBerth {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, as clients write registry hosts */
  host: string;
  port: number;
  /** The data folder; on S3, its name is the server's key prefix in the bucket. */
  dataDir: string;
  /** The server's storage, seen from the test (the data folder, or the bucket under its prefix). */
  storage: StorageDriver;
  /** The variables that point another berth command at the server's storage (and Redis). */
  storageEnv: Record<string, string>;
  /** Everything the server logged so far, one JSON object per line. */
  logs: string[];
  process: ChildProcess;
  /** Sends SIGTERM and waits for the process to exit. */
  stop(): Promise<void>;
  /** Runs another `berth` command (user add, token create, …) on the same storage and configuration. */
  cli(args: string[], stdin?: string): Promise<CliResult>;
  /** Stops the server and starts it again on the same port and data folder. */
  restart(): Promise<void>;
  /** Stops the server and removes its data folder. */
  destroy(): Promise<void>;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface StartOptions {
  env?: Record<string, string>;
  dataDir?: string;
  port?: number;
}

let s3: TestS3 | undefined;
let sharedRedisUrl: string | undefined;

/**
 * From now on, servers that startBerth starts keep their data in S3 (each under a key prefix of its own,
 * named after its data folder, so a restart or a second server on the same folder sees the same data), or
 * again in their folder (undefined); with a Redis URL, they also keep their shared state there (under a
 * key prefix named the same way).
 */
export function storeBerthDataIn(endpoint: TestS3 | undefined, redisUrl?: string): void {
  s3 = endpoint;
  sharedRedisUrl = endpoint ? redisUrl : undefined;
}

export async function startBerth(options: StartOptions = {}): Promise<TestBerth> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'berth-test-'));
  const bucket = s3;
  const storageEnv: Record<string, string> = bucket ? bucket.berthEnv(`${basename(dataDir)}/`) : {};
  if (bucket && sharedRedisUrl) {
    storageEnv.BERTH_REDIS_URL = sharedRedisUrl;
    storageEnv.BERTH_REDIS_PREFIX = `berth:${basename(dataDir)}:`;
  }
  const storage = bucket ? new S3Driver(bucket.driverOptions(`${basename(dataDir)}/`)) : new FilesystemDriver(dataDir);
  const logs: string[] = [];
  let child: ChildProcess;
  let port = options.port ?? 0;

  const environment = (): NodeJS.ProcessEnv => ({
    ...process.env,
    BERTH_LISTEN: `127.0.0.1:${port}`,
    BERTH_DATA: dataDir,
    BERTH_LOG_LEVEL: 'info',
    BERTH_SHUTDOWN_TIMEOUT_MS: '5000',
    // One process unless a test asks for workers: most suites test the API, not the process model.
    BERTH_WORKERS: '1',
    // No authentication unless a test asks for a mode: the API suites test the distribution API; the
    // auth suites (test/auth/) start servers in public-index and private mode.
    BERTH_MODE: 'open',
    ...storageEnv,
    ...options.env,
  });

  async function launch(): Promise<void> {
    child = spawn(process.execPath, berthArgs(['serve']), {
      cwd: ROOT,
      env: environment(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stderr: string[] = [];
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
    const lines = createInterface({ input: child.stdout! });
    port = await new Promise<number>((resolvePort, reject) => {
      const onExit = (code: number | null) =>
        reject(new Error(`berth exited with ${code} before serving:\n${stderr.join('')}`));
      child.once('exit', onExit);
      lines.on('line', (line) => {
        logs.push(line);
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'berth is serving' && entry.url) {
            child.off('exit', onExit);
            resolvePort(Number(new URL(entry.url).port));
          }
        } catch {
          // not a log line
        }
      });
    });
  }

  async function stop(): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    await exited;
  }

  await launch();
  const handle: TestBerth = {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get host() {
      return `127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    get process() {
      return child;
    },
    dataDir,
    storage,
    storageEnv: { BERTH_DATA: dataDir, ...storageEnv },
    logs,
    stop,
    cli(args: string[], stdin?: string): Promise<CliResult> {
      const cli = spawn(process.execPath, berthArgs(args), {
        cwd: ROOT,
        env: environment(),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      cli.stdout!.on('data', (c: Buffer) => out.push(c));
      cli.stderr!.on('data', (c: Buffer) => err.push(c));
      cli.stdin!.end(stdin ?? '');
      return new Promise((resolveResult, reject) => {
        cli.once('error', reject);
        cli.once('close', (code) => resolveResult({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
      });
    },
    async restart() {
      await stop();
      await launch();
    },
    async destroy() {
      await stop();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return handle;
}

/**
 * One server for a whole mocha suite: started in `before`, destroyed in `after`. The registry client is
 * usable in the suite's tests; `berth` is there once `before` has run.
 */
export function useBerth(options: StartOptions = {}): { registry: Registry; readonly berth: TestBerth } {
  let berth: TestBerth | undefined;
  const registry = new Registry('http://127.0.0.1:0');
  before(async () => {
    berth = await startBerth(options);
    registry.base = berth.url;
  });
  after(() => berth?.destroy());
  return {
    registry,
    get berth() {
      if (!berth) throw new Error('the server starts in before()');
      return berth;
    },
  };
}
