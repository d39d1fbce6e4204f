// Berth vs CNCF Distribution 2.8: one run starts the registries on loopback ports and measures them the
// same way, interleaved, several times, and prints the medians as a Markdown table (also written to
// bench/results/latest.md). Four registries: Berth on disk (as `npm start` runs it: one process), the same
// with `--workers 2`, Berth on S3 + Redis (the same Berth with BERTH_S3_* pointing at a local s3rver and
// BERTH_REDIS_URL at a redis-server, both started by this script as separate processes, their CPU counted
// apart), and Distribution with its filesystem driver. Then the scale phases (bench/scale.ts), each on a
// fresh Berth (one process) and a fresh Distribution started for it: 10,000 tags into one repository, small
// images, the anonymous catalog over 10,000 private + 100 public repositories, an index of 1,000 indexes,
// 256 MiB pushes from a plain http.request client, and idle memory.
//
//   npm run bench                       full run (5 repetitions of the first phases, the scale phases once)
//   npm run bench -- --quick            small sizes, short GET runs, 1 repetition (a smoke test)
//   npm run bench -- --reps=3 --duration=2 --only=mono,get
//   npm run bench -- --only=tags --tags 2000
//
// Options (flag, or environment variable):
//   --reps=N        BENCH_REPS       repetitions of every measurement (default 5, quick: 1)
//   --quick         BENCH_QUICK=1    64 MiB blobs, 256 MiB memory run, 1 s GET runs
//   --duration=S    BENCH_DURATION   seconds of each manifest GET run (default 3, quick: 1)
//   --only=LIST     BENCH_ONLY       a subset of mono,chunked,pull,get,rss (repeated, on the four registries)
//                                    and tags,small,catalog,nested,plain,idle,mirror (the scale phases, once)
//   --tags=N        BENCH_TAGS       tag PUTs into one repository (default 10000, quick: 2000; the loop
//                                    stops after 240 s, and the report says how many were done)
//   --images=N      BENCH_IMAGES     small images at most (default 20000; the phase also stops after
//                                    20 s, quick: 5 s)
//   --catalog=N     BENCH_CATALOG    private repositories behind the catalog, besides 100 public ones
//                                    (default 10000, quick: 1000)
//   --children=N    BENCH_CHILDREN   entries of the index and of the index of indexes (default 1000, quick: 200)
//   --out=PATH      BENCH_OUT        where the table is written (default bench/results/latest.md)
//   --node          BENCH_NODE_LOAD=1  use the built-in Node load generator for GETs even if wrk is there
//   --keep          BENCH_KEEP=1     keep the temporary folder (registry data, configs)
//   --quiet-wait=S  BENCH_QUIET_WAIT before each measurement, wait up to S s (default 60, 0: off) while
//                                    other processes keep more than a third of a core busy
//   --no-s3         BENCH_S3=0       leave out Berth on S3 + Redis (no s3rver, no redis-server)
//   --no-workers    BENCH_WORKERS=0  leave out Berth with --workers 2
//   --s3-rss=0      BENCH_S3_RSS=0   skip the big push + pull and memory measurement on S3 + Redis
//                                    (2 GiB through s3rver at ~100 MB/s adds about 2 min to a full run)
//                   BENCH_BERTH_NODE_ARGS  extra node flags for Berth, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
// A flag that takes a value also takes it as the next argument: --tags 2000.
//
// Manifest GETs are driven by wrk (Debian package `wrk`) when it is installed, with a Lua script for the
// latency percentiles; a Node keep-alive generator is the fallback. Distribution is /usr/bin/docker-registry
// (Debian package `docker-registry`). The S3 variant needs redis-server (Debian package `redis-server`) and
// the s3rver devDependency, started through test/helpers/s3.ts (which adds the multipart calls s3rver lacks).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  buildBundle,
  format,
  locationOf,
  log,
  MANIFEST_ACCEPT,
  median,
  memoryOf,
  MiB,
  OCTET,
  percentile,
  pushImage,
  resetPeak,
  send,
  withDigest,
  type Metric,
  type Registry,
  type RegistryKey,
  type Reply,
  waitForSettledDisk,
} from './lib.ts';
import { runScalePhases, SCALE_PHASES, type ScaleOptions, type ScalePhase } from './scale.ts';

const ROOT = resolve(import.meta.dirname, '..');
const DISTRIBUTION_BIN = '/usr/bin/docker-registry';
const SUFFIX = 16; // bytes that make every pushed blob unique (its digest is precomputed from a hash copy)

// ---------------------------------------------------------------------------------------------- options

const CLASSIC_PHASES = ['mono', 'chunked', 'pull', 'get', 'rss'] as const;
type Phase = (typeof CLASSIC_PHASES)[number] | ScalePhase;
const PHASES: Phase[] = [...CLASSIC_PHASES, ...SCALE_PHASES];

interface Options {
  reps: number;
  quick: boolean;
  durationS: number;
  blobBytes: number;
  chunkBytes: number;
  bigBytes: number;
  only: Set<Phase>;
  out: string;
  nodeLoad: boolean;
  keep: boolean;
  quietWaitS: number;
  berthNodeArgs: string[];
  s3: boolean;
  s3Rss: boolean;
  workers: boolean;
  scale: ScaleOptions;
}

class UsageError extends Error {}

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string>();
  const valued = new Set(['reps', 'duration', 'only', 'out', 'quiet-wait', 's3-rss', 'tags', 'images', 'catalog', 'children']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(readFileSync(new URL(import.meta.url), 'utf8').split('\nimport ')[0]!.replace(/^\/\/ ?/gm, '') + '\n');
      process.exit(0);
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new UsageError(`unknown argument ${arg} (try --help)`);
    const next = argv[i + 1];
    if (m[2] === undefined && valued.has(m[1]!) && next !== undefined && !next.startsWith('--')) flags.set(m[1]!, argv[++i]!);
    else flags.set(m[1]!, m[2] ?? 'true');
  }
  const env = process.env;
  const get = (flag: string, envName: string): string | undefined => flags.get(flag) ?? env[envName];
  const truthy = (v: string | undefined) => v !== undefined && v !== '' && v !== '0' && v !== 'false';
  const known = new Set([...valued, 'quick', 'node', 'keep', 'no-s3', 'no-workers']);
  for (const k of flags.keys()) if (!known.has(k)) throw new UsageError(`unknown option --${k} (try --help)`);

  const quick = truthy(get('quick', 'BENCH_QUICK'));
  const num = (v: string | undefined, fallback: number, what: string): number => {
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${what} must be a positive number (got ${v})`);
    return n;
  };
  const onlyRaw = get('only', 'BENCH_ONLY');
  const only = new Set<Phase>(onlyRaw ? (onlyRaw.split(',').map((s) => s.trim()) as Phase[]) : PHASES);
  for (const p of only) if (!PHASES.includes(p)) throw new UsageError(`--only: unknown phase ${p} (phases: ${PHASES.join(',')})`);
  return {
    reps: Math.round(num(get('reps', 'BENCH_REPS'), quick ? 1 : 5, '--reps')),
    quick,
    durationS: num(get('duration', 'BENCH_DURATION'), quick ? 1 : 3, '--duration'),
    blobBytes: (quick ? 64 : 256) * MiB,
    chunkBytes: 16 * MiB,
    bigBytes: (quick ? 256 : 2048) * MiB,
    only,
    out: resolve(get('out', 'BENCH_OUT') ?? join(ROOT, 'bench', 'results', 'latest.md')),
    nodeLoad: truthy(get('node', 'BENCH_NODE_LOAD')),
    keep: truthy(get('keep', 'BENCH_KEEP')),
    quietWaitS: get('quiet-wait', 'BENCH_QUIET_WAIT') === '0' ? 0 : num(get('quiet-wait', 'BENCH_QUIET_WAIT'), 60, '--quiet-wait'),
    berthNodeArgs: (env.BENCH_BERTH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean),
    s3: flags.has('no-s3') ? !truthy(flags.get('no-s3')) : env.BENCH_S3 === undefined || env.BENCH_S3 === '' || truthy(env.BENCH_S3),
    s3Rss: get('s3-rss', 'BENCH_S3_RSS') === undefined || truthy(get('s3-rss', 'BENCH_S3_RSS')),
    workers: flags.has('no-workers') ? !truthy(flags.get('no-workers')) : env.BENCH_WORKERS === undefined || env.BENCH_WORKERS === '' || truthy(env.BENCH_WORKERS),
    scale: {
      tags: Math.round(num(get('tags', 'BENCH_TAGS'), quick ? 2000 : 10_000, '--tags')),
      smallSeconds: quick ? 5 : 20,
      smallImages: Math.round(num(get('images', 'BENCH_IMAGES'), 20_000, '--images')),
      catalogPrivate: Math.round(num(get('catalog', 'BENCH_CATALOG'), quick ? 1000 : 10_000, '--catalog')),
      catalogPublic: 100,
      indexChildren: Math.round(num(get('children', 'BENCH_CHILDREN'), quick ? 200 : 1000, '--children')),
      plainBytes: (quick ? 64 : 256) * MiB,
    },
  };
}

// ------------------------------------------------------------------------------------------- utilities

let droppedCaches = false;

/** Drops the clean page cache (root only); false when this machine does not allow it. */
function dropPageCache(): boolean {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * The resident memory of a group of processes: each one's own pages, plus the file-backed pages once.
 * Worker processes run the same node binary and libraries, whose pages the kernel keeps once; adding up
 * their VmRSS would count those ~45 MiB once per process.
 */
function groupMemory(pids: number[]): number {
  const mems = pids.map((pid) => memoryOf(pid));
  if (mems.length === 1) return mems[0]!.rss;
  return mems.reduce((sum, m) => sum + m.anon, 0) + Math.max(0, ...mems.map((m) => m.file));
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds the whole machine has been busy (all cores, steal included). */
function machineBusySeconds(): number {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = f.map(Number);
  return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / CLK_TCK;
}

/** CPU seconds (user + system, all threads) a process has used so far; 0 once it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** A process and all its descendants (Berth may run as a cluster primary with worker processes). */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

function treeCpuSeconds(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** "node ×3, esbuild ×1": what a process tree is made of. */
function describeTree(pids: number[]): string {
  const counts = new Map<string, number>();
  for (const pid of pids) {
    let comm = '?';
    try {
      comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      // gone
    }
    counts.set(comm, (counts.get(comm) ?? 0) + 1);
  }
  return [...counts].map(([comm, n]) => `${comm} ×${n}`).join(', ');
}

// ----------------------------------------------------------------------------------------- blob sources

/**
 * A blob of `size` bytes: a fixed prefix (a file, or bytes generated on the fly) whose sha256 state is
 * computed once, followed by SUFFIX random bytes per variant, so every push stores a new blob and its
 * digest costs only a hash copy.
 */
class BlobSource {
  private constructor(
    readonly size: number,
    private readonly prefix: (start: number, end: number) => AsyncIterable<Buffer>,
    private readonly prefixHash: Hash,
    private readonly onDisk = false,
  ) {}

  /** Reads a file-backed prefix once, so that after the page cache was dropped the client does not push from the disk. */
  async warm(): Promise<void> {
    if (!this.onDisk) return;
    for await (const chunk of this.prefix(0, this.size - SUFFIX)) void chunk;
  }

  static async fromFile(path: string, size: number): Promise<BlobSource> {
    const prefixSize = size - SUFFIX;
    const out = createWriteStream(path);
    for (let written = 0; written < prefixSize; ) {
      const n = Math.min(4 * MiB, prefixSize - written);
      if (!out.write(randomBytes(n))) await new Promise<void>((r) => out.once('drain', () => r()));
      written += n;
    }
    await new Promise<void>((r, reject) => out.end((err?: Error | null) => (err ? reject(err) : r())));
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
    const read = (start: number, end: number): AsyncIterable<Buffer> =>
      createReadStream(path, { start, end: end - 1, highWaterMark: 4 * MiB }) as AsyncIterable<Buffer>;
    return new BlobSource(size, read, hash, true);
  }

  /** Bytes made on the fly from a 1 MiB random block stamped with its index: nothing is stored or buffered. */
  static async generated(size: number): Promise<BlobSource> {
    const block = randomBytes(MiB);
    async function* generate(start: number, end: number): AsyncGenerator<Buffer> {
      for (let i = Math.floor(start / MiB); i * MiB < end; i++) {
        const buf = Buffer.allocUnsafe(MiB);
        block.copy(buf);
        buf.writeBigUInt64LE(BigInt(i), 0);
        const from = Math.max(start, i * MiB) - i * MiB;
        const to = Math.min(end, (i + 1) * MiB) - i * MiB;
        yield from === 0 && to === MiB ? buf : buf.subarray(from, to);
      }
    }
    const hash = createHash('sha256');
    for await (const chunk of generate(0, size - SUFFIX)) hash.update(chunk);
    return new BlobSource(size, generate, hash);
  }

  variant(): BlobVariant {
    const suffix = randomBytes(SUFFIX);
    const digest = `sha256:${this.prefixHash.copy().update(suffix).digest('hex')}`;
    const prefixSize = this.size - SUFFIX;
    const prefix = this.prefix;
    const size = this.size;
    return {
      size: this.size,
      digest,
      body(start = 0, end = size): Readable {
        async function* all(): AsyncGenerator<Buffer> {
          if (start < prefixSize) yield* prefix(start, Math.min(end, prefixSize));
          if (end > prefixSize) yield suffix.subarray(Math.max(0, start - prefixSize), end - prefixSize);
        }
        return Readable.from(all(), { objectMode: false, highWaterMark: 4 * MiB });
      },
    };
  }
}

interface BlobVariant {
  size: number;
  digest: string;
  /** The bytes [start, end) as a stream. */
  body(start?: number, end?: number): Readable;
}

// -------------------------------------------------------------------------------------------- registries

/** A process the S3 variant depends on (s3rver, redis-server): measured apart from the registry. */
interface Helper {
  name: string;
  process: ChildProcess;
  output: string[];
}

function keepTail(output: string[], stream: NodeJS.ReadableStream | null): void {
  stream?.on('data', (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 200) output.splice(0, output.length - 200);
  });
}

async function waitUntilServing(reg: Registry, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (reg.process.exitCode !== null || reg.process.signalCode !== null) {
      throw new Error(`${reg.label} exited (${reg.process.exitCode ?? reg.process.signalCode}) before serving:\n${reg.output.join('')}`);
    }
    try {
      const reply = await send(reg, 'GET', '/v2/', { expect: [200, 401] });
      // 401 with a challenge: a Berth with authentication on, serving.
      if (reply.status === 200 || /^Bearer /.test(reply.headers['www-authenticate'] ?? '')) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${reg.label} did not answer GET /v2/ within ${timeoutMs / 1000} s:\n${reg.output.join('')}`);
}

const BERTH_VARIANTS = {
  berth: { label: 'Berth', data: 'berth-data' },
  berthWorkers: { label: 'Berth --workers 2', data: 'berth-workers-data' },
  berthS3: { label: 'Berth S3+Redis', data: 'berth-s3-data' },
} as const;

async function startBerth(dir: string, nodeArgs: string[], variant: keyof typeof BERTH_VARIANTS, env: Record<string, string> = {}): Promise<Registry> {
  const port = await freePort();
  const dataDir = join(dir, BERTH_VARIANTS[variant].data);
  mkdirSync(dataDir, { recursive: true });
  // As `npm start` runs it: the compiled JavaScript (built once in main()).
  const child = spawn(process.execPath, ['--max-semi-space-size=4', ...nodeArgs, join('dist', 'bin', 'berth.js'), 'serve'], {
    cwd: ROOT,
    env: { ...process.env, BERTH_LISTEN: `127.0.0.1:${port}`, BERTH_DATA: dataDir, BERTH_LOG_LEVEL: 'warn', BERTH_MODE: 'open', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return watchRegistry(variant, BERTH_VARIANTS[variant].label, port, child);
}

/** Waits until a helper prints a line matching `ready`; returns the match. */
async function waitForOutput(helper: Helper, ready: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = ready.exec(helper.output.join(''));
    if (m) return m;
    if (helper.process.exitCode !== null || helper.process.signalCode !== null || (helper.process.pid === undefined && helper.output.length > 0)) {
      throw new Error(`${helper.name} exited (${helper.process.exitCode ?? helper.process.signalCode}) before it was ready:\n${helper.output.join('')}`);
    }
    await sleep(50);
  }
  throw new Error(`${helper.name} was not ready within ${timeoutMs / 1000} s:\n${helper.output.join('')}`);
}

function startHelper(name: string, command: string, args: string[]): Helper {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const helper: Helper = { name, process: child, output: [] };
  keepTail(helper.output, child.stdout);
  keepTail(helper.output, child.stderr);
  return helper;
}

const REDIS_BIN = 'redis-server';

/** redis-server on a free loopback port, no persistence. */
async function startRedis(started: Helper[]): Promise<{ helper: Helper; url: string }> {
  const port = await freePort();
  const helper = startHelper('redis-server', REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  helper.process.once('error', (err) => helper.output.push(`spawn failed: ${err.message} (apt-get install -y redis-server)\n`));
  started.push(helper); // stopped by the caller's cleanup, even if it never gets ready
  await waitForOutput(helper, /Ready to accept connections/);
  return { helper, url: `redis://127.0.0.1:${port}` };
}

const S3_BUCKET = 'berth-bench';

/**
 * s3rver in a child process of its own (its CPU apart from this script's and Berth's), through the tests'
 * helper, which adds what s3rver lacks (AbortMultipartUpload, UploadPartCopy, ListMultipartUploads, working
 * ListObjectsV2 paging on Node 20) and keeps its objects in a temporary folder removed on SIGTERM.
 */
async function startS3rver(started: Helper[]): Promise<{ helper: Helper; endpoint: string }> {
  const script = [
    `import { startS3 } from './test/helpers/s3.ts';`,
    `const s3 = await startS3(${JSON.stringify(S3_BUCKET)});`,
    `console.log('BENCH_S3 ' + s3.endpoint + ' ' + s3.directory);`,
    `const stop = () => s3.close().finally(() => process.exit(0));`,
    `process.once('SIGTERM', stop);`,
    `process.once('SIGINT', stop);`,
  ].join('\n');
  const helper = startHelper('s3rver', process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
  started.push(helper);
  const m = await waitForOutput(helper, /BENCH_S3 (\S+) (\S+)/);
  return { helper, endpoint: m[1]! };
}

function helperVersion(command: string, args: string[], pattern: RegExp): string {
  const out = spawnSync(command, args, { encoding: 'utf8' });
  return pattern.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown';
}

function s3rverVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', 's3rver', 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function stopHelper(helper: Helper): Promise<void> {
  const child = helper.process;
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Wraps a started registry process, keeps the tail of its output, and waits until it answers. */
async function watchRegistry(key: RegistryKey, label: string, port: number, child: ChildProcess): Promise<Registry> {
  const reg: Registry = {
    key,
    label,
    base: `http://127.0.0.1:${port}`,
    process: child,
    agent: new http.Agent({ keepAlive: true, maxSockets: 8 }),
    output: [],
  };
  keepTail(reg.output, child.stdout);
  keepTail(reg.output, child.stderr);
  try {
    await waitUntilServing(reg);
  } catch (err) {
    child.kill('SIGKILL'); // not left running when it never served
    throw err;
  }
  return reg;
}

/** A fresh Distribution; `extra` adds top-level configuration (e.g. its `proxy:` section). */
async function startDistribution(dir: string, extra: string[] = []): Promise<Registry> {
  if (!existsSync(DISTRIBUTION_BIN)) {
    throw new Error(`${DISTRIBUTION_BIN} not found: install Distribution 2.8 with  apt-get install -y docker-registry`);
  }
  const port = await freePort();
  const dataDir = join(dir, 'distribution-data');
  mkdirSync(dataDir, { recursive: true });
  const config = join(dir, 'distribution.yml');
  // The stock configuration (in-memory blob descriptor cache), with log level warn; the access log is off
  // because it is written for every request whatever the level (Berth at warn logs no request lines).
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${dataDir}`,
      '  delete:',
      '    enabled: true',
      '  cache:',
      '    blobdescriptor: inmemory',
      '  maintenance:',
      '    uploadpurging:',
      '      enabled: false',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      ...extra,
      '',
    ].join('\n'),
  );
  const child = spawn(DISTRIBUTION_BIN, ['serve', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return watchRegistry('distribution', 'Distribution', port, child);
}

async function stopRegistry(reg: Registry): Promise<void> {
  reg.agent.destroy();
  const child = reg.process;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

// ------------------------------------------------------------------------------------------------- HTTP

/** POST, then one PUT ?digest= with the whole body. */
async function pushMonolithic(reg: Registry, repo: string, blob: BlobVariant): Promise<void> {
  const started = await send(reg, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'Content-Length': 0 }, expect: [202] });
  const done = await send(reg, 'PUT', withDigest(locationOf(reg, started), blob.digest), {
    headers: { 'Content-Type': OCTET, 'Content-Length': blob.size },
    body: blob.body(),
    expect: [201],
  });
  checkDigest(reg, done, blob.digest);
}

/** POST, PATCH chunks with Content-Range, then PUT ?digest= with no body. */
async function pushChunked(reg: Registry, repo: string, blob: BlobVariant, chunkBytes: number): Promise<void> {
  let reply = await send(reg, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'Content-Length': 0 }, expect: [202] });
  let location = locationOf(reg, reply);
  for (let start = 0; start < blob.size; start += chunkBytes) {
    const end = Math.min(blob.size, start + chunkBytes);
    reply = await send(reg, 'PATCH', location, {
      headers: { 'Content-Type': OCTET, 'Content-Length': end - start, 'Content-Range': `${start}-${end - 1}` },
      body: blob.body(start, end),
      expect: [202],
    });
    location = locationOf(reg, reply);
  }
  const done = await send(reg, 'PUT', withDigest(location, blob.digest), { headers: { 'Content-Length': 0 }, expect: [201] });
  checkDigest(reg, done, blob.digest);
}

async function pull(reg: Registry, repo: string, digest: string, size: number): Promise<void> {
  const reply = await send(reg, 'GET', `/v2/${repo}/blobs/${digest}`, { discard: true, expect: [200] });
  if (reply.bytes !== size) throw new Error(`${reg.label}: pulled ${reply.bytes} bytes of ${digest}, expected ${size}`);
}

function checkDigest(reg: Registry, reply: Reply, digest: string): void {
  const got = reply.headers['docker-content-digest'];
  if (got !== undefined && got !== digest) throw new Error(`${reg.label}: stored ${got}, expected ${digest}`);
}

// ------------------------------------------------------------------------------------ the small image

const IMAGE_REPO = 'bench/image';
const BLOB_REPO = 'bench/blobs';
const TAG = 'bench';

// --------------------------------------------------------------------------------- manifest GET load

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  /** CPU time of a separate load generator process (wrk); unset when the load came from this process. */
  clientCpuSeconds?: number;
}

const WRK_LUA = `
wrk.method = "GET"
wrk.headers["Accept"] = "${MANIFEST_ACCEPT}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`;

function findWrk(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : undefined;
}

function wrkVersion(wrk: string): string {
  const out = spawnSync(wrk, ['-v'], { encoding: 'utf8' });
  return (/wrk\s+(\S+)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown').replace(/^debian\//, '');
}

async function runWrk(wrk: string, script: string, url: string, connections: number, seconds: number): Promise<LoadResult> {
  // Through sh, which prints its own /proc stat once wrk is reaped: its cutime + cstime are wrk's CPU time.
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, url];
  const child = spawn('sh', ['-c', '"$0" "$@"; s=$?; cat /proc/$$/stat; exit $s', wrk, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const line = /BENCH_JSON (\{.*\})/.exec(out);
  if (code !== 0 || !line) throw new Error(`wrk failed (${code}):\n${out}`);
  const r = JSON.parse(line[1]!) as { requests: number; duration_us: number; p50_us: number; p99_us: number; errors: number };
  const stat = /^\d+ \(sh\) (.*)$/m.exec(out)?.[1]?.split(' ');
  const clientCpuSeconds = stat ? (Number(stat[13]) + Number(stat[14])) / CLK_TCK : undefined;
  return { rps: r.requests / (r.duration_us / 1e6), p50: r.p50_us / 1000, p99: r.p99_us / 1000, requests: r.requests, errors: r.errors, clientCpuSeconds };
}

/** The fallback: `connections` closed-loop keep-alive clients in this process. */
async function runNodeLoad(url: string, connections: number, seconds: number): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(seconds * 1e9));
  const once = () =>
    new Promise<void>((resolveOne) => {
      const t0 = process.hrtime.bigint();
      const req = http.get(url, { agent, headers: { Accept: MANIFEST_ACCEPT } }, (res) => {
        res.on('data', () => {});
        res.on('end', () => {
          if (res.statusCode === 200) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          else errors++;
          resolveOne();
        });
      });
      req.on('error', () => {
        errors++;
        resolveOne();
      });
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (process.hrtime.bigint() < deadline) await once();
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { rps: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), requests: latencies.length, errors };
}

// ------------------------------------------------------------------------------------------ the report

type Samples = Record<string, Partial<Record<RegistryKey, number[]>>>;

function machineInfo(): { cpus: number; model: string; memory: string; kernel: string } {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const memKb = Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  return {
    cpus: os.availableParallelism(),
    model,
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
  };
}

function berthVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? '';
  } catch {
    return '';
  }
}

function distributionVersion(): string {
  const out = spawnSync(DISTRIBUTION_BIN, ['--version'], { encoding: 'utf8' });
  return `${out.stdout}${out.stderr}`.trim() || 'unknown';
}

function cell(values: number[] | undefined, decimals: number): string {
  if (!values || values.length === 0) return 'n/a';
  const m = format(median(values), decimals);
  if (values.length === 1) return m;
  return `${m} (${format(Math.min(...values), decimals)}–${format(Math.max(...values), decimals)})`;
}

// ------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  if (!process.env.BENCH_NO_BUILD) buildBundle(ROOT);
  const opts = parseOptions(process.argv.slice(2));
  const t0 = Date.now();
  const startedAt = new Date();
  const load0 = os.loadavg();
  const tmp = mkdtempSync(join(os.tmpdir(), 'berth-bench-'));
  const registries: Registry[] = [];
  const helpers: Helper[] = [];
  let interrupted = false;
  const cleanup = async () => {
    await Promise.all(registries.map((r) => stopRegistry(r).catch(() => {})));
    await Promise.all(helpers.map((h) => stopHelper(h).catch(() => {})));
    if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
    else log(`kept ${tmp}`);
  };
  process.once('SIGINT', () => {
    interrupted = true;
    log('interrupted: stopping the registries');
    void cleanup().then(() => process.exit(130));
  });

  try {
    const wrk = opts.nodeLoad ? undefined : findWrk();
    if (!wrk && !opts.nodeLoad && opts.only.has('get')) log('wrk not found (apt-get install -y wrk): using the Node load generator for manifest GETs');
    const generator = wrk ? `wrk ${wrkVersion(wrk)} (1 thread, Lua script for percentiles)` : 'Node http keep-alive clients (built in)';
    const luaPath = join(tmp, 'manifest.lua');
    writeFileSync(luaPath, WRK_LUA);

    // The first phases run on the four registries started here; without them, only Berth and Distribution
    // are started, for the report's columns (each scale phase starts its own).
    const classic = CLASSIC_PHASES.some((p) => opts.only.has(p));
    const withWorkers = opts.workers && classic;
    const withS3 = opts.s3 && classic;
    log(`preparing data in ${tmp}`);
    const small = opts.only.has('mono') || opts.only.has('chunked') || opts.only.has('pull')
      ? await BlobSource.fromFile(join(tmp, 'blob.bin'), opts.blobBytes)
      : undefined;
    // Made when first needed: hashing 2 GiB of generated bytes churns this process's memory, and made
    // up front it slowed the first pushes measured after it.
    let big: BlobSource | undefined;
    // Pushed (unmeasured) to every registry after the page cache is dropped, so that each reads its own
    // program back from the disk before a measurement, not during it.
    const warmUp = await BlobSource.generated(4 * MiB);

    log(`starting Distribution, Berth${withWorkers ? ', Berth --workers 2' : ''}${withS3 ? ', redis-server, s3rver and Berth on S3 + Redis' : ''}`);
    const distribution = await startDistribution(tmp);
    registries.push(distribution);
    const berth = await startBerth(tmp, opts.berthNodeArgs, 'berth');
    registries.push(berth);
    let berthWorkers: Registry | undefined;
    if (withWorkers) {
      berthWorkers = await startBerth(tmp, opts.berthNodeArgs, 'berthWorkers', { BERTH_WORKERS: '2' });
      registries.push(berthWorkers);
    }
    let berthS3: Registry | undefined;
    let redis: Helper | undefined;
    let s3rver: Helper | undefined;
    if (withS3) {
      const r = await startRedis(helpers);
      redis = r.helper;
      const s = await startS3rver(helpers);
      s3rver = s.helper;
      berthS3 = await startBerth(tmp, opts.berthNodeArgs, 'berthS3', {
        BERTH_S3_BUCKET: S3_BUCKET,
        BERTH_S3_ENDPOINT: s.endpoint,
        BERTH_S3_FORCE_PATH_STYLE: 'true',
        BERTH_S3_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        // Credentials come from the environment: never ask an instance metadata service.
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        BERTH_REDIS_URL: r.url,
      });
      registries.push(berthS3);
    }
    /** The measured registries, in column order. */
    const regs: Registry[] = [berth, berthWorkers, berthS3, distribution].filter((r): r is Registry => r !== undefined);
    const layer = randomBytes(32 * 1024);
    for (const reg of classic ? regs : []) {
      const { manifest } = await pushImage(reg, IMAGE_REPO, TAG, [layer]);
      const got = await send(reg, 'GET', `/v2/${IMAGE_REPO}/manifests/${TAG}`, { headers: { Accept: MANIFEST_ACCEPT }, expect: [200] });
      if (!got.body.equals(manifest)) throw new Error(`${reg.label}: the manifest read back differs from the one pushed`);
    }

    // Warm-up, not counted: JIT, connection pools, page cache, and time for every worker to start.
    log('warming up');
    for (const reg of regs) {
      if (small) await pushMonolithic(reg, BLOB_REPO, small.variant());
      const url = `${reg.base}/v2/${IMAGE_REPO}/manifests/${TAG}`;
      if (opts.only.has('get')) await (wrk ? runWrk(wrk, luaPath, url, 32, 1) : runNodeLoad(url, 32, 1));
    }
    // CPU and memory are counted over each registry's whole process tree, looked up again per measurement.
    const trees = (): Record<RegistryKey, number[]> => {
      const t: Record<RegistryKey, number[]> = { berth: [], berthWorkers: [], berthS3: [], distribution: [] };
      for (const reg of regs) t[reg.key] = processTree(reg.process.pid!);
      return t;
    };
    const helperCpuSeconds = (h: Helper | undefined) => (h?.process.pid !== undefined ? treeCpuSeconds(processTree(h.process.pid)) : 0);
    const berthTree = describeTree(trees().berth);
    log(`Berth runs as ${berthTree}`);
    const berthWorkersTree = berthWorkers ? describeTree(trees().berthWorkers) : '';
    if (berthWorkers) log(`${berthWorkers.label} runs as ${berthWorkersTree}`);
    const berthS3Tree = berthS3 ? describeTree(trees().berthS3) : '';
    if (berthS3) log(`Berth S3+Redis runs as ${berthS3Tree}`);

    const metrics: Metric[] = [];
    const samples: Samples = {};
    const cpu: Samples = {};
    const clientCpu: Samples = {};
    const otherCpu: Samples = {};
    /** CPU of s3rver and redis-server during the S3 variant's measurements, % of one core. */
    const s3rverCpu: Record<string, number[]> = {};
    const redisCpu: Record<string, number[]> = {};
    const push = (target: Samples, what: string, key: RegistryKey, value: number) => ((target[what] ??= {})[key] ??= []).push(value);
    /** Waits (bounded) until processes other than ours leave the machine mostly idle. */
    const waitForQuiet = async (tag: string, options: { freeMemory?: boolean } = {}) => {
      // Flush dirty pages first: a registry that leaves its writes to the page cache (Distribution does
      // not fsync) must not slow the next measurement, whichever registry it is, with its writeback.
      spawnSync('sync');
      // Before pushes, drop the clean page cache too: the gigabytes earlier repetitions wrote fill memory,
      // and a push that must make the kernel reclaim pages first ran at half speed (both registries,
      // later repetitions only), which made the medians depend on how long the run had gone on.
      if (options.freeMemory && dropPageCache()) {
        droppedCaches = true;
        for (const reg of regs) await pushMonolithic(reg, BLOB_REPO, warmUp.variant());
        await small?.warm();
      }
      if (opts.quietWaitS <= 0) return;
      const t = trees();
      const ours = () => Object.values(t).reduce((sum, tree) => sum + treeCpuSeconds(tree), 0) + helperCpuSeconds(redis) + helperCpuSeconds(s3rver);
      const deadline = Date.now() + opts.quietWaitS * 1000;
      for (let first = true; ; first = false) {
        const m0 = machineBusySeconds();
        const o0 = ours();
        const self0 = process.cpuUsage();
        await sleep(1000);
        const self = process.cpuUsage(self0);
        const busy = machineBusySeconds() - m0 - (ours() - o0) - (self.user + self.system) / 1e6;
        if (busy < 0.35) {
          if (!first) log(`${tag} quiet again`);
          return;
        }
        if (Date.now() >= deadline) {
          log(`${tag} other processes still use ${Math.round(busy * 100)} % of a core: going on anyway`);
          return;
        }
        if (first) log(`${tag} other processes use ${Math.round(busy * 100)} % of a core: waiting up to ${opts.quietWaitS} s for quiet`);
        await sleep(2000);
      }
    };
    const add = (metric: Metric, reg: Registry, value: number) => {
      if (!metrics.some((m) => m.key === metric.key)) metrics.push(metric);
      push(samples, metric.key, reg.key, value);
    };
    /** Runs fn and records the server's CPU use during it, as % of one core. */
    const measured = async <T>(what: string, reg: Registry, fn: () => Promise<T>): Promise<{ value: T; seconds: number }> => {
      const tree = trees()[reg.key];
      const withHelpers = reg.key === 'berthS3';
      const c0 = treeCpuSeconds(tree);
      const s3rver0 = withHelpers ? helperCpuSeconds(s3rver) : 0;
      const redis0 = withHelpers ? helperCpuSeconds(redis) : 0;
      const m0 = machineBusySeconds();
      const self0 = process.cpuUsage();
      const s = process.hrtime.bigint();
      const value = await fn();
      const seconds = Number(process.hrtime.bigint() - s) / 1e9;
      const server = treeCpuSeconds(tree) - c0;
      const s3rverUsed = withHelpers ? helperCpuSeconds(s3rver) - s3rver0 : 0;
      const redisUsed = withHelpers ? helperCpuSeconds(redis) - redis0 : 0;
      const machineBusy = machineBusySeconds() - m0;
      const self = process.cpuUsage(self0);
      const external = (value as { clientCpuSeconds?: number } | undefined)?.clientCpuSeconds;
      const client = external ?? (self.user + self.system) / 1e6;
      push(cpu, what, reg.key, (100 * server) / seconds);
      push(clientCpu, what, reg.key, (100 * client) / seconds);
      if (withHelpers) {
        (s3rverCpu[what] ??= []).push((100 * s3rverUsed) / seconds);
        (redisCpu[what] ??= []).push((100 * redisUsed) / seconds);
      }
      // What neither the server (nor its s3rver and Redis) nor its client used: other processes on the machine (noise).
      const others = Math.max(0, machineBusy - server - s3rverUsed - redisUsed - client - (external !== undefined ? (self.user + self.system) / 1e6 : 0));
      push(otherCpu, what, reg.key, (100 * others) / seconds);
      return { value, seconds };
    };
    const mb = (bytes: number, seconds: number) => bytes / 1e6 / seconds;
    const sizeLabel = (bytes: number) => (bytes >= 1024 * MiB ? `${bytes / 1024 / MiB} GiB` : `${bytes / MiB} MiB`);

    for (let rep = 0; rep < opts.reps; rep++) {
      // Interleaved: the registries take turns going first, measurement by measurement.
      const order = regs.map((_, i) => regs[(i + rep) % regs.length]!);
      const tag = `[${rep + 1}/${opts.reps}]`;
      let lastPushed: Partial<Record<RegistryKey, BlobVariant>> = {};

      if (small && opts.only.has('mono')) {
        await waitForQuiet(tag, { freeMemory: true });
        for (const reg of order) {
          const blob = small.variant();
          const { seconds } = await measured('mono', reg, () => pushMonolithic(reg, BLOB_REPO, blob));
          lastPushed[reg.key] = blob;
          add({ key: 'mono', label: `Monolithic push, ${sizeLabel(blob.size)} (MB/s)`, higherIsBetter: true, decimals: 0 }, reg, mb(blob.size, seconds));
          log(`${tag} ${reg.label}: monolithic push ${format(mb(blob.size, seconds), 0)} MB/s`);
        }
      }
      if (small && opts.only.has('chunked')) {
        await waitForQuiet(tag, { freeMemory: true });
        for (const reg of order) {
          const blob = small.variant();
          const { seconds } = await measured('chunked', reg, () => pushChunked(reg, BLOB_REPO, blob, opts.chunkBytes));
          lastPushed[reg.key] = blob;
          add(
            { key: 'chunked', label: `Chunked push, ${sizeLabel(blob.size)} in ${sizeLabel(opts.chunkBytes)} PATCHes (MB/s)`, higherIsBetter: true, decimals: 0 },
            reg,
            mb(blob.size, seconds),
          );
          log(`${tag} ${reg.label}: chunked push ${format(mb(blob.size, seconds), 0)} MB/s`);
        }
      }
      if (small && opts.only.has('pull')) {
        await waitForQuiet(tag);
        for (const reg of order) {
          let blob = lastPushed[reg.key];
          if (!blob) {
            blob = small.variant();
            await pushMonolithic(reg, BLOB_REPO, blob);
          }
          const pulled = blob;
          const { seconds } = await measured('pull', reg, () => pull(reg, BLOB_REPO, pulled.digest, pulled.size));
          add({ key: 'pull', label: `Blob pull, ${sizeLabel(pulled.size)} (MB/s)`, higherIsBetter: true, decimals: 0 }, reg, mb(pulled.size, seconds));
          log(`${tag} ${reg.label}: pull ${format(mb(pulled.size, seconds), 0)} MB/s`);
        }
      }
      lastPushed = {};

      if (opts.only.has('get')) {
        for (const connections of [1, 32]) {
          await waitForQuiet(tag);
          for (const reg of order) {
            const url = `${reg.base}/v2/${IMAGE_REPO}/manifests/${TAG}`;
            const { value: r } = await measured(`get${connections}`, reg, () =>
              wrk ? runWrk(wrk, luaPath, url, connections, opts.durationS) : runNodeLoad(url, connections, opts.durationS),
            );
            if (r.errors > 0) throw new Error(`${reg.label}: ${r.errors} failed manifest GETs at ${connections} clients`);
            const c = `${connections} client${connections > 1 ? 's' : ''}`;
            add({ key: `get${connections}-rps`, label: `Manifest GET by tag, ${c} (requests/s)`, higherIsBetter: true, decimals: 0 }, reg, r.rps);
            add({ key: `get${connections}-p50`, label: `Manifest GET, ${c}: p50 latency (ms)`, higherIsBetter: false, decimals: 2 }, reg, r.p50);
            add({ key: `get${connections}-p99`, label: `Manifest GET, ${c}: p99 latency (ms)`, higherIsBetter: false, decimals: 2 }, reg, r.p99);
            log(`${tag} ${reg.label}: manifest GET x${connections}: ${format(r.rps, 0)} req/s, p50 ${format(r.p50, 2)} ms, p99 ${format(r.p99, 2)} ms`);
          }
        }
      }

      if (opts.only.has('rss')) {
        big ??= await BlobSource.generated(opts.bigBytes);
        await waitForQuiet(tag, { freeMemory: true });
        for (const reg of order) {
          if (reg.key === 'berthS3' && !opts.s3Rss) continue;
          const tree = trees()[reg.key];
          const total = () => groupMemory(tree);
          const idle = total();
          const reset = tree.every((pid) => resetPeak(pid));
          let sampled = idle;
          const sampler = setInterval(() => {
            sampled = Math.max(sampled, total());
          }, 50);
          const blob = big.variant();
          let pushedMb: number;
          let pulledMb: number;
          try {
            const pushed = await measured('bigpush', reg, () => pushMonolithic(reg, BLOB_REPO, blob));
            const pulled = await measured('bigpull', reg, () => pull(reg, BLOB_REPO, blob.digest, blob.size));
            pushedMb = mb(blob.size, pushed.seconds);
            pulledMb = mb(blob.size, pulled.seconds);
            add({ key: 'bigpush', label: `Monolithic push, ${sizeLabel(blob.size)} generated (MB/s)`, higherIsBetter: true, decimals: 0 }, reg, pushedMb);
            add({ key: 'bigpull', label: `Blob pull, ${sizeLabel(blob.size)} (MB/s)`, higherIsBetter: true, decimals: 0 }, reg, pulledMb);
          } finally {
            clearInterval(sampler);
          }
          const mems = tree.map((pid) => memoryOf(pid));
          // One process: its own high-water mark. Several: the sampled group total (file pages once).
          const byHwm = tree.length === 1 && reset;
          const peak = byHwm ? Math.max(sampled, mems[0]!.hwm) : sampled;
          const largest = Math.max(...mems.map((m) => (reset ? m.hwm : m.rss)));
          add({ key: 'rss-idle', label: `Resident memory, idle before the ${sizeLabel(blob.size)} push (MiB)`, higherIsBetter: false, decimals: 0 }, reg, idle / MiB);
          add({ key: 'rss-peak', label: `Peak resident memory during the ${sizeLabel(blob.size)} push + pull, all processes (MiB)`, higherIsBetter: false, decimals: 0 }, reg, peak / MiB);
          add({ key: 'rss-largest', label: `Peak resident memory of the largest single process (MiB)`, higherIsBetter: false, decimals: 0 }, reg, largest / MiB);
          log(`${tag} ${reg.label}: ${sizeLabel(blob.size)} push ${format(pushedMb, 0)} MB/s, pull ${format(pulledMb, 0)} MB/s, RSS ${format(idle / MiB, 0)} MiB before, peak ${format(peak / MiB, 0)} MiB in ${tree.length} process${tree.length > 1 ? 'es' : ''} (${byHwm ? 'VmHWM' : tree.length === 1 ? 'sampled VmRSS' : 'sampled, file pages once'}), largest ${format(largest / MiB, 0)} MiB`);
        }
      }
    }

    const notes: string[] = [];
    const scalePhases = SCALE_PHASES.filter((p) => opts.only.has(p));
    if (scalePhases.length > 0) {
      const started = async (start: Promise<Registry>) => {
        const reg = await start;
        registries.push(reg);
        return reg;
      };
      await runScalePhases(
        {
          tmp,
          startBerth: (dir, env) => started(startBerth(dir, opts.berthNodeArgs, 'berth', env)),
          startDistribution: (dir, extra) => started(startDistribution(dir, extra)),
          stop: async (reg) => {
            await stopRegistry(reg);
            if (registries.includes(reg)) registries.splice(registries.indexOf(reg), 1);
          },
          settle: async () => {
            await waitForQuiet('[scale]');
            await waitForSettledDisk(tmp, '[scale]');
          },
          add,
          note: (line) => notes.push(line),
        },
        opts.scale,
        scalePhases,
      );
    }

    const totalS = (Date.now() - t0) / 1000;
    const machine = machineInfo();
    const load1 = os.loadavg();
    const s3Skipped = Boolean(berthS3 && big && opts.only.has('rss') && !opts.s3Rss);
    const lines: string[] = [];
    lines.push(`# Berth${berthS3 ? ' (disk; S3 + Redis)' : ''} vs CNCF Distribution${opts.quick ? ' (quick mode)' : ''}`, '');
    lines.push(`- Date: ${startedAt.toISOString().replace('T', ' ').slice(0, 19)} UTC`);
    lines.push(`- Machine: ${machine.cpus} CPUs (nproc), ${machine.model}, ${machine.memory} memory, ${machine.kernel}`);
    lines.push(`- Load average (1 min) at start / end: ${load0[0]!.toFixed(2)} / ${load1[0]!.toFixed(2)}`);
    lines.push(`- Node ${process.version}; Distribution: ${distributionVersion()}`);
    lines.push(`- Berth ${berthVersion()}: \`node --max-semi-space-size=4 dist/bin/berth.js serve\` (as \`npm start\` runs it), BERTH_LOG_LEVEL=warn, BERTH_MODE=open (no authentication, like the Distribution it is compared with)${process.env.BERTH_WORKERS ? `, BERTH_WORKERS=${process.env.BERTH_WORKERS}` : ''}, data on disk (BERTH_DATA), running as ${berthTree} (CPU is summed over the process tree; memory too, with the file-backed pages that all its processes share, the node binary and its libraries, counted once)${opts.berthNodeArgs.length ? ` (node ${opts.berthNodeArgs.join(' ')})` : ''}`);
    if (berthWorkers) {
      lines.push(`- Berth --workers 2: the same Berth with BERTH_WORKERS=2 (a primary process and two workers on one port), data on disk, running as ${berthWorkersTree}`);
    }
    if (berthS3) {
      lines.push(
        `- Berth S3+Redis: the same Berth, running as ${berthS3Tree}, with BERTH_S3_BUCKET/ENDPOINT (path style, default part size) on s3rver ${s3rverVersion()} ` +
          `(a separate Node process, objects in a temp folder, with the multipart calls it lacks added by test/helpers/s3.ts) and BERTH_REDIS_URL on ` +
          `redis-server ${helperVersion(REDIS_BIN, ['--version'], /v=(\S+)/)} (no persistence); s3rver and Redis CPU are counted apart, their memory not at all`,
      );
    } else if (classic) {
      lines.push('- Berth on S3 + Redis left out (--no-s3 / BENCH_S3=0)');
    }
    lines.push('- Distribution: filesystem storage, delete enabled, in-memory blob descriptor cache, log level warn, access log off');
    if (classic) {
      lines.push(
        `- ${opts.reps} repetition${opts.reps > 1 ? 's' : ''}, the registries interleaved (taking turns going first); ` +
          `each cell is the median${opts.reps > 1 ? ' (min–max)' : ''}. MB = 10^6 bytes.`,
      );
      lines.push(
        `- Blobs: random bytes, a new digest for every push (precomputed); uploads stream from a temp file` +
          `${big ? `, the ${sizeLabel(big.size)} one generated on the fly` : ''}; one keep-alive connection.`,
      );
    }
    lines.push('- Before each measurement the script flushes dirty pages (`sync`), so no registry pays for the previous one\'s unflushed writes; Berth fsyncs every blob before it becomes visible, Distribution 2.8 each file it commits');
    if (droppedCaches) lines.push('- Before each push measurement the script also drops the clean page cache (`/proc/sys/vm/drop_caches`), then pushes a 4 MiB blob to every registry (unmeasured) and reads the source blob once: the gigabytes earlier repetitions wrote would otherwise fill memory and make later pushes wait for page reclaim');
    if (opts.quietWaitS > 0) lines.push(`- Before each measurement the script waited (up to ${opts.quietWaitS} s) until other processes used less than a third of a core`);
    if (opts.only.has('get')) lines.push(`- Manifest GETs: ${generator}, ${opts.durationS} s per run, keep-alive, after a 1 s warm-up`);
    if (s3Skipped) lines.push(`- The ${sizeLabel(big!.size)} push + pull and memory run was skipped for Berth S3+Redis (\`--s3-rss=0\` / BENCH_S3_RSS=0: s3rver is slow): "skipped" in the table`);
    if (scalePhases.length > 0) {
      lines.push(
        `- Scale phases (${scalePhases.join(', ')}; bench/scale.ts), measured once${classic ? ', after the others' : ''}: each on a fresh Berth (one process, as above, ` +
          'open mode unless said otherwise) and then a fresh Distribution, started for it on an empty data folder and stopped after it, ' +
          'each measurement after the disk has settled (making a file back near its quietest cost: on ext4 without a journal, inodes freed in the last minutes slow every file creation, so a registry would pay for the one before it); ' +
          '"8 at once" is 8 requests in flight through a pool of 8 keep-alive connections. MB = 10^6 bytes.',
      );
    }
    for (const note of notes) lines.push(`- ${note}`);
    lines.push(`- Total run time: ${Math.floor(totalS / 60)} min ${Math.round(totalS % 60)} s`, '');
    const others = regs.filter((r) => r !== distribution);
    lines.push(`| Measurement | ${regs.map((r) => r.label).join(' | ')} | ${others.map((r) => `${r.label} / Distribution`).join(' | ')} |`);
    lines.push(`| --- |${' ---: |'.repeat(regs.length + others.length)}`);
    for (const m of metrics) {
      const s = samples[m.key]!;
      const cells = regs.map((r) => (s[r.key]?.length ? cell(s[r.key], m.decimals) : r === berthS3 && s3Skipped ? 'skipped' : 'n/a'));
      const ratios = others.map((r) => {
        if (!s[r.key]?.length) return r === berthS3 && s3Skipped ? 'skipped' : 'n/a';
        const ratio = median(s[r.key]!) / median(s.distribution ?? []);
        const better = Number.isFinite(ratio) ? ((m.higherIsBetter ? ratio >= 1 : ratio <= 1) ? '' : ' (worse)') : '';
        return Number.isFinite(ratio) ? `${format(ratio, 2)}×${better}` : 'n/a';
      });
      lines.push(`| ${m.label} | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
    }
    lines.push('', 'Throughput: higher is better; latency and memory: lower is better.', '');
    const get32 = samples['get32-rps'];
    if (get32?.distribution?.length) {
      const verdicts = others
        .filter((r) => get32[r.key]?.length)
        .map((r) => {
          const ratio = median(get32[r.key]!) / median(get32.distribution!);
          return `${r.label} ${format(ratio, 2)}× (${ratio >= 1.5 ? 'met' : 'NOT met'})`;
        });
      lines.push(`Target (issue 3): manifest GET requests/s at 32 clients at least 1.5× Distribution's: ${verdicts.join('; ')}.`, '');
    }
    // The CPU table: the first phases only (the scale phases measure no CPU).
    if (Object.keys(cpu).length > 0) {
      const cpuLabels: Record<string, string> = {
        mono: 'monolithic push',
        chunked: 'chunked push',
        pull: 'blob pull',
        get1: 'manifest GET, 1 client',
        get32: 'manifest GET, 32 clients',
        bigpush: `${big ? sizeLabel(big.size) : ''} push`,
        bigpull: `${big ? sizeLabel(big.size) : ''} pull`,
      };
      lines.push(
        `CPU use during each measurement, in % of one core (medians; the machine has ${machine.cpus} cores). ` +
          'The client is this script (pushes, pulls) or wrk (manifest GETs). "Others" is the rest of the machine: ' +
          'noise from outside the benchmark, plus loopback network work the kernel charges to no process (large on pulls)' +
          `${berthS3 ? '; for Berth S3+Redis, s3rver and redis-server are shown apart from Berth' : ''}:`,
        '',
      );
      const head: string[] = [];
      for (const r of regs) {
        head.push(`${r.label} server`);
        if (r === berthS3) head.push('s3rver', 'Redis');
        head.push('its client', 'others');
      }
      lines.push(`| During | ${head.join(' | ')} |`, `| --- |${' ---: |'.repeat(head.length)}`);
      const pct = (values: number[] | undefined) => (values?.length ? `${format(median(values), 0)} %` : '–');
      for (const [key, v] of Object.entries(cpu)) {
        const row: string[] = [];
        for (const r of regs) {
          row.push(pct(v[r.key]));
          if (r === berthS3) row.push(pct(v[r.key]?.length ? s3rverCpu[key] : undefined), pct(v[r.key]?.length ? redisCpu[key] : undefined));
          row.push(pct(clientCpu[key]?.[r.key]), pct(otherCpu[key]?.[r.key]));
        }
        lines.push(`| ${cpuLabels[key] ?? key} | ${row.join(' | ')} |`);
      }
    }
    const table = lines.join('\n') + '\n';

    process.stdout.write(`\n${table}`);
    mkdirSync(dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, table);
    log(`written to ${opts.out}`);
  } finally {
    if (!interrupted) await cleanup();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err instanceof UsageError ? err.message : (err.stack ?? err.message)}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
