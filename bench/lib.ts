// What the benchmark's files share: the registries as the client sees them, the HTTP client every
// measurement uses, small images, process memory, and the number formatting of the report.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export const MiB = 1024 * 1024;

/** Builds the bundle Berth is run from (`npm run build`, as `npm start` does) in the checkout at `root`. */
export function buildBundle(root: string): void {
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');
}

export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function format(value: number, decimals: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/**
 * VmRSS and VmHWM of a process, and its resident memory split into anonymous (+ shared memory) and
 * file-backed pages, in bytes (0 once it is gone).
 */
export function memoryOf(pid: number): { rss: number; hwm: number; anon: number; file: number } {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return { rss: 0, hwm: 0, anon: 0, file: 0 };
  }
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: field('VmRSS'), hwm: field('VmHWM'), anon: field('RssAnon') + field('RssShmem'), file: field('RssFile') };
}

/** Resets VmHWM (Linux ≥ 4.0, needs permission on the process); false when that is not possible. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export type RegistryKey = 'berth' | 'berthWorkers' | 'berthS3' | 'distribution';

export interface Registry {
  key: RegistryKey;
  label: string;
  base: string;
  process: ChildProcess;
  agent: http.Agent;
  output: string[];
  /** Sent with every request (credentials, for a registry with authentication on). */
  headers?: Record<string, string>;
}

export interface Metric {
  key: string;
  label: string;
  higherIsBetter: boolean;
  decimals: number;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  bytes: number;
}

export interface SendOptions {
  headers?: Record<string, string | number>;
  body?: Buffer | Readable;
  /** Count the response bytes without keeping them. */
  discard?: boolean;
  expect: number[];
  /** Fail when the connection stays silent this long. */
  timeoutMs?: number;
}

export function send(reg: Registry, method: string, target: string | URL, options: SendOptions): Promise<Reply> {
  const url = typeof target === 'string' ? new URL(target, reg.base) : target;
  return new Promise<Reply>((resolveReply, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(err);
    };
    const req = http.request(url, { method, agent: reg.agent, headers: { ...reg.headers, ...options.headers } });
    req.on('error', fail);
    if (options.timeoutMs) req.setTimeout(options.timeoutMs, () => fail(new Error(`${reg.label}: ${method} ${url.pathname}: no answer within ${options.timeoutMs! / 1000} s`)));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (!options.discard) chunks.push(chunk);
      });
      res.on('error', fail);
      res.on('end', () => {
        if (settled) return;
        const body = Buffer.concat(chunks);
        const status = res.statusCode ?? 0;
        if (!options.expect.includes(status)) {
          return fail(new Error(`${reg.label}: ${method} ${url.pathname}: HTTP ${status} (expected ${options.expect.join('/')}): ${body.toString().slice(0, 500)}`));
        }
        settled = true;
        resolveReply({ status, headers: res.headers, body, bytes });
      });
    });
    if (options.body instanceof Readable) pipeline(options.body, req).catch((err: Error) => fail(err));
    else req.end(options.body);
  });
}

export function locationOf(reg: Registry, reply: Reply): URL {
  const location = reply.headers.location;
  if (!location) throw new Error(`${reg.label}: reply ${reply.status} without a Location header`);
  return new URL(location, reg.base);
}

export function withDigest(url: URL, digest: string): URL {
  const u = new URL(url);
  u.searchParams.set('digest', digest);
  return u;
}

export const OCTET = 'application/octet-stream';

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function pushSmallBlob(reg: Registry, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const started = await send(reg, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'Content-Length': 0 }, expect: [202] });
  await send(reg, 'PUT', withDigest(locationOf(reg, started), digest), {
    headers: { 'Content-Type': OCTET, 'Content-Length': data.length },
    body: data,
    expect: [201],
  });
  return digest;
}

export async function putManifest(reg: Registry, repo: string, reference: string, body: Buffer, mediaType: string, timeoutMs?: number): Promise<Reply> {
  return send(reg, 'PUT', `/v2/${repo}/manifests/${reference}`, {
    headers: { 'Content-Type': mediaType, 'Content-Length': body.length },
    body,
    expect: [201],
    timeoutMs,
  });
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A config blob, the layers and an OCI image manifest under `tag`. */
export async function pushImage(reg: Registry, repo: string, tag: string, layers: Buffer[]): Promise<{ manifest: Buffer; digest: string }> {
  const layerDigests: string[] = [];
  for (const layer of layers) layerDigests.push(await pushSmallBlob(reg, repo, layer));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/true'] },
      rootfs: { type: 'layers', diff_ids: layerDigests },
    }),
  );
  const configDigest = await pushSmallBlob(reg, repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((layer, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigests[i], size: layer.length })),
      annotations: { 'org.opencontainers.image.title': 'berth benchmark' },
    }),
  );
  await putManifest(reg, repo, tag, manifest, OCI_MANIFEST);
  return { manifest, digest: sha256(manifest) };
}

/**
 * Waits (at most `limitS`) until making files costs about what it costs on a quiet disk. On ext4 without a
 * journal (the usual cloud VM root disk) every inode freed in the last 60 to 360 seconds slows each later
 * file creation in its group: a registry that removes its upload folders, or a previous run's clean-up,
 * would otherwise make whichever registry runs next pay for it. The probe's files stay (freeing them would
 * be the very thing waited out) until the run's clean-up.
 */
export async function waitForSettledDisk(dir: string, tag: string, limitS = 150): Promise<void> {
  const deadline = Date.now() + limitS * 1000;
  for (let first = true; ; first = false) {
    const probe = join(dir, `settle-probe-${++settleProbes}`);
    mkdirSync(probe, { recursive: true });
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) closeSync(openSync(join(probe, String(i)), 'wx'));
    const us = ((performance.now() - t0) * 1000) / 100;
    bestCreateUs = Math.min(bestCreateUs, us);
    if (us <= Math.max(SETTLED_CREATE_US, 2 * bestCreateUs)) {
      if (!first) log(`${tag} the disk has settled (${Math.round(us)} µs per file made)`);
      return;
    }
    if (Date.now() >= deadline) {
      log(`${tag} making a file still costs ${Math.round(us)} µs: going on anyway`);
      return;
    }
    if (first) log(`${tag} making a file costs ${Math.round(us)} µs (recently freed inodes): waiting up to ${limitS} s for the disk to settle`);
    await sleep(5000);
  }
}
const SETTLED_CREATE_US = 100;
let bestCreateUs = Infinity;
let settleProbes = 0;
