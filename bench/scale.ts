// The benchmark's scale phases: what grows (tags in one repository, repositories behind a filtered
// catalog, an index of indexes), many small images, large pushes from a plain client, idle memory, and
// warm pulls through a pull-through cache (Berth's mirrors against Distribution's proxy mode).
// Each phase starts a fresh Berth (one process, as `npm start` runs it) and then a fresh Distribution, each
// on an empty data folder of its own, so that no phase pays for what another left behind. The folders stay
// until the run's cleanup: removing the files of 10,000 repositories takes a minute on a busy disk.
// run.ts lends the registries and the report (ScaleBench); the phases are chosen with its --only.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import http from 'node:http';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  format,
  locationOf,
  log,
  memoryOf,
  MiB,
  OCI_MANIFEST,
  OCTET,
  percentile,
  pushImage,
  pushSmallBlob,
  putManifest,
  resetPeak,
  send,
  sha256,
  withDigest,
  type Metric,
  type Registry,
} from './lib.ts';

export const SCALE_PHASES = ['tags', 'small', 'catalog', 'nested', 'plain', 'idle', 'mirror'] as const;
export type ScalePhase = (typeof SCALE_PHASES)[number];

export interface ScaleOptions {
  /** Tag PUTs into one repository (--tags). */
  tags: number;
  /** The small-image phase stops after this many seconds or images, whichever comes first. */
  smallSeconds: number;
  smallImages: number;
  /** Private and public repositories behind the anonymous catalog (--catalog: the private ones). */
  catalogPrivate: number;
  catalogPublic: number;
  /** Entries of the index, and of the index of indexes (--children). */
  indexChildren: number;
  /** Size of each blob of the plain client's pushes, single and 8 at once. */
  plainBytes: number;
}

/** What run.ts lends the phases. */
export interface ScaleBench {
  tmp: string;
  /** A fresh Berth, in open mode unless `env` says otherwise, its data under `dir` (or BERTH_DATA). */
  startBerth(dir: string, env?: Record<string, string>): Promise<Registry>;
  /** A fresh Distribution, its configuration and data under `dir`; `extra` adds top-level configuration. */
  startDistribution(dir: string, extra?: string[]): Promise<Registry>;
  stop(reg: Registry): Promise<void>;
  /** Before a measurement: flushes dirty pages, then waits (bounded) until other processes leave the machine mostly idle. */
  settle(): Promise<void>;
  add(metric: Metric, reg: Registry, value: number): void;
  /** A line for the notes above the table. */
  note(line: string): void;
}

const CONCURRENCY = 8;
/** No loop of a phase goes on longer than this, whatever its count. */
const LOOP_SECONDS = 600;
/** The tag loop's bound: with tags costing more as they grow, the count may not be reached. */
const TAG_SECONDS = 240;
/** A request whose connection stays silent this long fails. */
const REQUEST_TIMEOUT_MS = 60_000;
const SLOW_TIMEOUT_MS = 600_000;
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const ROOT = resolve(import.meta.dirname, '..');

export async function runScalePhases(b: ScaleBench, o: ScaleOptions, phases: ScalePhase[]): Promise<void> {
  const run: Record<ScalePhase, () => Promise<void>> = {
    tags: () => tagPhase(b, o),
    small: () => smallImagePhase(b, o),
    catalog: () => catalogPhase(b, o),
    nested: () => nestedIndexPhase(b, o),
    plain: () => plainClientPhase(b, o),
    idle: () => idlePhase(b),
    mirror: () => mirrorPhase(b),
  };
  const took: string[] = [];
  for (const phase of phases) {
    const t0 = performance.now();
    log(`phase ${phase}`);
    await run[phase]();
    const s = (performance.now() - t0) / 1000;
    took.push(`${phase} ${s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`}`);
    log(`phase ${phase} took ${took.at(-1)!.slice(phase.length + 1)}`);
  }
  b.note(`Scale phases (a fresh Berth, then a fresh Distribution, each; the time includes starting them and filling them): ${took.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------- helpers

/** Runs `fn` on a fresh Berth, then on a fresh Distribution, each in a folder of its own, stopping each after it. */
async function eachFresh<T>(
  b: ScaleBench,
  phase: string,
  fn: (reg: Registry) => Promise<T>,
  order: ReadonlyArray<'berth' | 'distribution'> = ['berth', 'distribution'],
): Promise<{ berth: T; distribution: T }> {
  const results: Partial<Record<'berth' | 'distribution', T>> = {};
  for (const kind of order) {
    const dir = join(b.tmp, `${phase}-${kind}`);
    const reg = kind === 'berth' ? await b.startBerth(dir) : await b.startDistribution(dir);
    try {
      results[kind] = await fn(reg);
    } catch (err) {
      throw withOutput(err, reg);
    } finally {
      await b.stop(reg);
    }
  }
  return results as { berth: T; distribution: T };
}

/** A failure, with what the registry printed last and whether it is still running. */
function withOutput(err: unknown, reg: Registry): Error {
  const state = reg.process.exitCode !== null || reg.process.signalCode !== null ? `exited (${reg.process.exitCode ?? reg.process.signalCode})` : 'still running';
  const error = err instanceof Error ? err : new Error(String(err));
  error.message += `\n${reg.label} ${state}; the end of its output:\n${reg.output.join('').slice(-4000) || '(none)'}`;
  return error;
}

const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');

/**
 * Runs task(0), task(1), … `concurrency` at a time until `count` have started or `limitS` seconds have passed;
 * resolves with how many were done. The first failure stops the others from starting and is thrown.
 */
async function pool(count: number, concurrency: number, limitS: number, task: (i: number) => Promise<void>): Promise<number> {
  const deadline = performance.now() + limitS * 1000;
  let next = 0;
  let done = 0;
  let failure: unknown;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (failure === undefined && next < count && performance.now() < deadline) {
        try {
          await task(next++);
          done++;
        } catch (err) {
          failure ??= err;
        }
      }
    }),
  );
  if (failure !== undefined) throw failure;
  return done;
}

const seconds = (t0: number) => (performance.now() - t0) / 1000;
const count = (n: number) => format(n, 0);

/** The peak resident memory of a one-process registry while `fn` runs: its VmHWM after a reset, else sampled VmRSS. */
async function peakDuring<T>(reg: Registry, fn: () => Promise<T>): Promise<{ value: T; peak: number }> {
  const pid = reg.process.pid!;
  const reset = resetPeak(pid);
  let sampled = memoryOf(pid).rss;
  const sampler = setInterval(() => (sampled = Math.max(sampled, memoryOf(pid).rss)), 50);
  try {
    const value = await fn();
    return { value, peak: Math.max(sampled, reset ? memoryOf(pid).hwm : 0) };
  } finally {
    clearInterval(sampler);
  }
}

// ------------------------------------------------------------------------ tags into one repository

/** One small image, then `tags` PUTs of its manifest under new tags of the same repository, 8 at once. */
async function tagPhase(b: ScaleBench, o: ScaleOptions): Promise<void> {
  const window = Math.min(1000, Math.floor(o.tags / 2));
  const what = `Tags into one repository, ${count(o.tags)} manifest PUTs 8 at once`;
  const { berth, distribution } = await eachFresh(b, 'tags', async (reg) => {
    const repo = 'bench/tags';
    const { manifest } = await pushImage(reg, repo, 'base', [randomBytes(1024)]);
    const finished: number[] = [];
    await b.settle();
    const t0 = performance.now();
    const done = await pool(o.tags, CONCURRENCY, TAG_SECONDS, async (i) => {
      await putManifest(reg, repo, `t${i}`, manifest, OCI_MANIFEST, REQUEST_TIMEOUT_MS);
      finished.push(performance.now());
    });
    const all = done / seconds(t0);
    if (done < o.tags) b.note(`${reg.label}: only ${count(done)} of ${count(o.tags)} tags were pushed within ${TAG_SECONDS} s (the tag rows are over those)`);
    const listed = (JSON.parse((await send(reg, 'GET', `/v2/${repo}/tags/list`, { expect: [200] })).body.toString()) as { tags: string[] }).tags.length;
    if (listed !== done + 1) throw new Error(`${reg.label}: ${listed} tags listed, ${done + 1} pushed`);
    const firstS = (finished[window - 1]! - t0) / 1000;
    const lastS = (finished[done - 1]! - finished[done - 1 - window]!) / 1000;
    b.add({ key: 'tags-all', label: `${what}: all (tags/s)`, higherIsBetter: true, decimals: 0 }, reg, all);
    b.add({ key: 'tags-first', label: `${what}: the first ${count(window)} (tags/s)`, higherIsBetter: true, decimals: 0 }, reg, window / firstS);
    b.add({ key: 'tags-last', label: `${what}: the last ${count(window)} (tags/s)`, higherIsBetter: true, decimals: 0 }, reg, window / lastS);
    b.add({ key: 'tags-ratio', label: `${what}: time of the last ${count(window)} / time of the first ${count(window)}`, higherIsBetter: false, decimals: 2 }, reg, lastS / firstS);
    log(`${reg.label}: ${count(done)} tags, ${format(all, 0)} tags/s; first ${window} ${format(window / firstS, 0)}/s, last ${window} ${format(window / lastS, 0)}/s (${format(lastS / firstS, 2)}×)`);
    return { all, ratio: lastS / firstS };
  });
  b.note(
    `Targets, tags: Berth's rate at least Distribution's: ${format(berth.all, 0)} against ${format(distribution.all, 0)} tags/s, ${verdict(berth.all >= distribution.all)}; ` +
      `its last ${count(window)} within 1.5× the time of its first ${count(window)}: ${format(berth.ratio, 2)}×, ${verdict(berth.ratio <= 1.5)}`,
  );
}

// ------------------------------------------------------------------------------------ small images

/** Images of a config and two layers of a few KiB (new blobs each) and a manifest, each its own tag, 8 at once. */
async function smallImagePhase(b: ScaleBench, o: ScaleOptions): Promise<void> {
  await eachFresh(b, 'small', async (reg) => {
    await b.settle();
    const t0 = performance.now();
    const done = await pool(o.smallImages, CONCURRENCY, o.smallSeconds, async (i) => {
      await pushImage(reg, 'bench/small', `i${i}`, [randomBytes(4 * 1024), randomBytes(6 * 1024)]);
    });
    const rate = done / seconds(t0);
    b.add({ key: 'small', label: 'Small images pushed 8 at once: config + 2 layers of 4 and 6 KiB + manifest, each its own tag (images/s)', higherIsBetter: true, decimals: 0 }, reg, rate);
    log(`${reg.label}: ${count(done)} small images in ${format(seconds(t0), 1)} s, ${format(rate, 0)} images/s`);
  });
}

// -------------------------------------------------------------------------------- anonymous catalog

const USER = 'bench';
const PASSWORD = 'bench-password-for-the-catalog';

/**
 * `/v2/_catalog?n=10` as an anonymous visitor sees it: Berth in public-index mode over many private and a
 * few public repositories (the public ones spread evenly among the private ones by name), all made by real
 * pushes with a user's Basic credentials: the private ones while Berth runs in private mode (whose new
 * repositories are private), then the public ones after a restart in public-index mode (whose new
 * repositories are public). Distribution, which has no visibility, serves the same repositories openly.
 */
async function catalogPhase(b: ScaleBench, o: ScaleOptions): Promise<void> {
  const total = o.catalogPrivate + o.catalogPublic;
  const names = Array.from({ length: total }, (_, i) => `${USER}/repo-${String(i).padStart(5, '0')}`);
  const publicAt = new Set(Array.from({ length: o.catalogPublic }, (_, k) => Math.floor(((k + 0.5) * total) / o.catalogPublic)));
  const privateNames = names.filter((_, i) => !publicAt.has(i));
  const publicNames = names.filter((_, i) => publicAt.has(i));
  const what = `${count(o.catalogPrivate)} private + ${count(o.catalogPublic)} public repositories (Distribution: ${count(total)}, no visibility)`;

  const dir = join(b.tmp, 'catalog-berth');
  const env = { BERTH_DATA: join(dir, 'data'), BERTH_AUDIT_LOG: join(dir, 'audit.log') };
  mkdirSync(env.BERTH_DATA, { recursive: true });
  const added = spawnSync(process.execPath, [join('dist', 'bin', 'berth.js'), 'user', 'add', USER, '--password-stdin'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    input: `${PASSWORD}\n`,
    encoding: 'utf8',
  });
  if (added.status !== 0) throw new Error(`berth user add failed: ${added.stderr}`);
  const basic = { Authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };

  let berth = await b.startBerth(dir, { ...env, BERTH_MODE: 'private' });
  try {
    berth.headers = basic;
    const t0 = performance.now();
    const image = await fillRepositories(berth, privateNames);
    await b.stop(berth);
    berth = await b.startBerth(dir, { ...env, BERTH_MODE: 'public-index' });
    berth.headers = basic;
    await fillRepositories(berth, publicNames, image);
    addFillRate(b, berth, total, seconds(t0), ', Berth restarted between the private and the public ones');
    // An anonymous client asks the token endpoint first, with no credentials, as docker does.
    berth.headers = undefined;
    const token = await send(berth, 'GET', `/token?service=berth&scope=${encodeURIComponent('registry:catalog:*')}`, { expect: [200] });
    berth.headers = { Authorization: `Bearer ${(JSON.parse(token.body.toString()) as { token: string }).token}` };
    await catalogLatency(b, berth, what, new Set(publicNames));
  } finally {
    await b.stop(berth);
  }

  const distribution = await b.startDistribution(join(b.tmp, 'catalog-distribution'));
  try {
    const t0 = performance.now();
    await fillRepositories(distribution, names);
    addFillRate(b, distribution, total, seconds(t0), '');
    await catalogLatency(b, distribution, what);
  } finally {
    await b.stop(distribution);
  }
}

interface SeedImage {
  from: string;
  config: string;
  manifest: Buffer;
}

/**
 * Makes each repository with a real push of one tiny image, 8 at once: its config blob mounted from the
 * first repository (one request), then its manifest (no layers). Returns what later calls mount from.
 */
async function fillRepositories(reg: Registry, names: string[], image?: SeedImage): Promise<SeedImage> {
  let todo = names;
  if (!image) {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const digest = await pushSmallBlob(reg, names[0]!, config);
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: config.length }, layers: [] }),
    );
    await putManifest(reg, names[0]!, 'latest', manifest, OCI_MANIFEST);
    image = { from: names[0]!, config: digest, manifest };
    todo = names.slice(1);
  }
  const { from, config, manifest } = image;
  const done = await pool(todo.length, CONCURRENCY, LOOP_SECONDS, async (i) => {
    const name = todo[i]!;
    await send(reg, 'POST', `/v2/${name}/blobs/uploads/?mount=${config}&from=${from}`, { headers: { 'Content-Length': 0 }, expect: [201], timeoutMs: REQUEST_TIMEOUT_MS });
    await putManifest(reg, name, 'latest', manifest, OCI_MANIFEST, REQUEST_TIMEOUT_MS);
  });
  if (done < todo.length) throw new Error(`${reg.label}: only ${done} of ${todo.length} repositories made within ${LOOP_SECONDS} s`);
  return image;
}

function addFillRate(b: ScaleBench, reg: Registry, total: number, s: number, how: string): void {
  b.add({ key: 'catalog-fill', label: `Making the ${count(total)} repositories: a blob mount + a manifest PUT each, 8 at once (repositories/s)`, higherIsBetter: true, decimals: 0 }, reg, total / s);
  log(`${reg.label}: ${count(total)} repositories made in ${format(s, 1)} s${how}`);
}

const CATALOG_REQUESTS = 300;
const CATALOG_SECONDS = 60;

/** One client, GET /v2/_catalog?n=10 again and again: at most CATALOG_REQUESTS, for at most CATALOG_SECONDS. */
async function catalogLatency(b: ScaleBench, reg: Registry, what: string, visible?: Set<string>): Promise<void> {
  const ms: number[] = [];
  await b.settle();
  const deadline = performance.now() + CATALOG_SECONDS * 1000;
  while (ms.length < CATALOG_REQUESTS && performance.now() < deadline) {
    const t = performance.now();
    const reply = await send(reg, 'GET', '/v2/_catalog?n=10', { expect: [200], timeoutMs: REQUEST_TIMEOUT_MS });
    ms.push(performance.now() - t);
    if (ms.length === 1) {
      const listed = (JSON.parse(reply.body.toString()) as { repositories: string[] }).repositories;
      if (listed.length !== 10 || (visible && !listed.every((name) => visible.has(name)))) {
        throw new Error(`${reg.label}: the catalog listed ${JSON.stringify(listed)}`);
      }
    }
  }
  ms.sort((x, y) => x - y);
  const label = `Anonymous GET /v2/_catalog?n=10, ${what}`;
  b.add({ key: 'catalog-p50', label: `${label}: p50 (ms)`, higherIsBetter: false, decimals: 1 }, reg, percentile(ms, 50));
  b.add({ key: 'catalog-p99', label: `${label}: p99 (ms)`, higherIsBetter: false, decimals: 1 }, reg, percentile(ms, 99));
  b.add({ key: 'catalog-n', label: `${label}: requests made (at most ${CATALOG_REQUESTS}, within ${CATALOG_SECONDS} s)`, higherIsBetter: true, decimals: 0 }, reg, ms.length);
  log(`${reg.label}: ${ms.length} catalog GETs, p50 ${format(percentile(ms, 50), 1)} ms, p99 ${format(percentile(ms, 99), 1)} ms`);
}

// ------------------------------------------------------------------------------------ nested index

/**
 * An OCI index of `indexChildren` image manifests (distinct, sharing one config and layer), then an index
 * whose `indexChildren` entries all point at that index. Times the top index's PUT (and the registry's peak
 * memory during it), then Berth's repository page in JSON.
 */
async function nestedIndexPhase(b: ScaleBench, o: ScaleOptions): Promise<void> {
  const n = o.indexChildren;
  const what = `Index of ${count(n)} indexes of ${count(n)} image manifests`;
  await eachFresh(b, 'nested', async (reg) => {
    const repo = 'bench/nested';
    const base = JSON.parse((await pushImage(reg, repo, 'base', [randomBytes(1024)])).manifest.toString()) as Record<string, unknown>;
    const children: object[] = [];
    const done = await pool(n, CONCURRENCY, LOOP_SECONDS, async (i) => {
      const body = Buffer.from(JSON.stringify({ ...base, annotations: { 'org.opencontainers.image.title': `child ${i}` } }));
      const digest = sha256(body);
      await putManifest(reg, repo, digest, body, OCI_MANIFEST, REQUEST_TIMEOUT_MS);
      children[i] = { mediaType: OCI_MANIFEST, digest, size: body.length, platform: { architecture: 'amd64', os: 'linux' } };
    });
    if (done < n) throw new Error(`${reg.label}: only ${done} of ${n} child manifests pushed within ${LOOP_SECONDS} s`);
    const index = indexOf(children);
    await putManifest(reg, repo, 'index', index, OCI_INDEX, SLOW_TIMEOUT_MS);
    const top = indexOf(Array.from({ length: n }, () => ({ mediaType: OCI_INDEX, digest: sha256(index), size: index.length })));

    await b.settle();
    const rss = memoryOf(reg.process.pid!).rss;
    const t0 = performance.now();
    const { value: reply, peak } = await peakDuring(reg, () =>
      send(reg, 'PUT', `/v2/${repo}/manifests/top`, {
        headers: { 'Content-Type': OCI_INDEX, 'Content-Length': top.length },
        body: top,
        expect: [201, 400, 404, 413, 415, 500],
        timeoutMs: SLOW_TIMEOUT_MS,
      }),
    );
    const putS = seconds(t0);
    const answer = `HTTP ${reply.status} after ${format(putS, 2)} s${reply.status === 201 ? '' : `: ${reply.body.toString().slice(0, 300)}`}`;
    log(`${reg.label}: PUT of the index of indexes (${format(top.length / 1024, 0)} KiB): ${answer}; peak RSS ${format(peak / MiB, 0)} MiB (${format(rss / MiB, 0)} before)`);
    if (reply.status !== 201) {
      b.note(`${reg.label} refused the ${what.toLowerCase()}: ${answer}`);
      return;
    }
    b.add({ key: 'nested-put', label: `${what}: PUT of the top index (s)`, higherIsBetter: false, decimals: 2 }, reg, putS);
    b.add({ key: 'nested-rss', label: `${what}: peak resident memory during that PUT (MiB)`, higherIsBetter: false, decimals: 0 }, reg, peak / MiB);
    if (reg.key !== 'berth') return;
    const t1 = performance.now();
    const api = await peakDuring(reg, () => send(reg, 'GET', `/api/v1/repositories/${repo}`, { discard: true, expect: [200], timeoutMs: SLOW_TIMEOUT_MS }));
    const pageS = seconds(t1);
    const page = `${what}: GET /api/v1/repositories/<name> afterwards (Berth only)`;
    b.add({ key: 'nested-api', label: `${page} (s)`, higherIsBetter: false, decimals: 2 }, reg, pageS);
    b.add({ key: 'nested-api-mb', label: `${page}: size of the answer (MB)`, higherIsBetter: false, decimals: 1 }, reg, api.value.bytes / 1e6);
    b.add({ key: 'nested-api-rss', label: `${page}: peak resident memory (MiB)`, higherIsBetter: false, decimals: 0 }, reg, api.peak / MiB);
    log(`${reg.label}: GET /api/v1/repositories/${repo}: ${format(pageS, 2)} s, ${format(api.value.bytes / 1e6, 1)} MB, peak RSS ${format(api.peak / MiB, 0)} MiB`);
  });
}

function indexOf(manifests: object[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
}

// ---------------------------------------------------------------------- large pushes, a plain client

/**
 * The single-push figure is over this many pushes in a row, one at a time: one 256 MiB push lasts half a
 * second for Berth, and on 12-03 single ones of the same build measured 279 to 516 MB/s minutes apart.
 */
const SINGLE_PUSHES = 3;

/** Bytes made from a random 1 MiB block stamped with a blob number and a slice number: nothing kept in memory. */
class PlainBlob {
  private static readonly block = randomBytes(MiB);
  readonly digest: string;

  constructor(
    readonly size: number,
    private readonly id: number,
  ) {
    const hash = createHash('sha256');
    for (const slice of this.slices()) hash.update(slice);
    this.digest = `sha256:${hash.digest('hex')}`;
  }

  /** New 1 MiB Buffers, as a client reading a file gets them. */
  *slices(): Generator<Buffer> {
    for (let i = 0; i * MiB < this.size; i++) {
      const slice = Buffer.allocUnsafe(Math.min(MiB, this.size - i * MiB));
      PlainBlob.block.copy(slice, 0, 0, slice.length);
      slice.writeUInt32LE(this.id, 0);
      slice.writeUInt32LE(i, 4);
      yield slice;
    }
  }
}

/**
 * POST, then a PUT ?digest= through Node's http.request with the default agent, its body written in 1 MiB
 * req.write() calls that wait for 'drain' whenever write() says the socket is full: how most clients stream.
 */
async function plainPush(reg: Registry, repo: string, blob: PlainBlob): Promise<void> {
  const started = await send(reg, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'Content-Length': 0 }, expect: [202] });
  const url = withDigest(locationOf(reg, started), blob.digest);
  const req = http.request(url, { method: 'PUT', headers: { 'Content-Type': OCTET, 'Content-Length': blob.size } });
  req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${reg.label}: the PUT of ${blob.digest} stalled`)));
  const response = once(req, 'response') as Promise<[http.IncomingMessage]>;
  response.catch(() => {}); // a failure while writing is thrown by the write loop's wait
  for (const slice of blob.slices()) if (!req.write(slice)) await once(req, 'drain');
  req.end();
  const [res] = await response;
  res.resume();
  await once(res, 'end');
  if (res.statusCode !== 201) throw new Error(`${reg.label}: PUT ${url.pathname}: HTTP ${res.statusCode}`);
}

async function plainClientPhase(b: ScaleBench, o: ScaleOptions): Promise<void> {
  const size = `${o.plainBytes / MiB} MiB`;
  log(`hashing ${CONCURRENCY + SINGLE_PUSHES} × ${size} for the plain client`);
  const alone = Array.from({ length: SINGLE_PUSHES }, (_, i) => new PlainBlob(o.plainBytes, CONCURRENCY + 2 + i));
  const parallel = Array.from({ length: CONCURRENCY }, (_, i) => new PlainBlob(o.plainBytes, i + 1));
  const mb = (bytes: number, s: number) => bytes / 1e6 / s;
  // A push before the measured ones, to both: a fresh Node process compiles its push path during its
  // first one (a sixth of a 256 MiB push's time here), which a running registry has done long before.
  const warmUp = new PlainBlob(Math.min(o.plainBytes, 32 * MiB), CONCURRENCY + 1);
  const measure = async (reg: Registry) => {
    await plainPush(reg, 'bench/warm-up', warmUp);
    await b.settle();
    let t0 = performance.now();
    for (const blob of alone) await plainPush(reg, 'bench/plain', blob);
    const one = mb(SINGLE_PUSHES * o.plainBytes, seconds(t0));
    await b.settle();
    t0 = performance.now();
    const { peak } = await peakDuring(reg, () => Promise.all(parallel.map((blob) => plainPush(reg, 'bench/plain', blob))));
    const eight = mb(CONCURRENCY * o.plainBytes, seconds(t0));
    // Two samples per registry: the table shows their median, the mean of the two.
    const what = 'Plain http.request client, body in 1 MiB write()s honouring drain, POST + PUT (mean of two runs)';
    b.add({ key: 'plain-1', label: `${what}: one ${size} push at a time, ${SINGLE_PUSHES} in a row (MB/s)`, higherIsBetter: true, decimals: 0 }, reg, one);
    b.add({ key: 'plain-8', label: `${what}: ${CONCURRENCY} × ${size} at once (MB/s, all together)`, higherIsBetter: true, decimals: 0 }, reg, eight);
    b.add({ key: 'plain-rss', label: `${what}: peak resident memory during the ${CONCURRENCY} at once (MiB)`, higherIsBetter: false, decimals: 0 }, reg, peak / MiB);
    log(`${reg.label}: plain client ${format(one, 0)} MB/s single, ${format(eight, 0)} MB/s ${CONCURRENCY} at once, peak RSS ${format(peak / MiB, 0)} MiB`);
    return { one, eight };
  };
  // Twice, the second time in the other order (Berth, Distribution, Distribution, Berth), each registry's
  // figure the mean of its two: on a virtual machine whose host backs freed memory lazily, the page cache
  // is cheap for a while after another process freed much of it (a registry stopped and its folder
  // removed), so whichever ran second got a cheaper page cache; Distribution's eight pushes measured 140
  // to 309 MB/s in runs minutes apart.
  const first = await eachFresh(b, 'plain', measure);
  const second = await eachFresh(b, 'plain-again', measure, ['distribution', 'berth']);
  const mean = (kind: 'berth' | 'distribution') => ({ one: (first[kind].one + second[kind].one) / 2, eight: (first[kind].eight + second[kind].eight) / 2 });
  const berth = mean('berth');
  const distribution = mean('distribution');
  const single = berth.one / distribution.one;
  const together = berth.eight / distribution.eight;
  b.note(
    `Target, plain client: Berth at least 2× Distribution's MB/s: one push ${format(single, 2)}×, ${verdict(single >= 2)}; ` +
      `${CONCURRENCY} at once ${format(together, 2)}×, ${verdict(together >= 2)} ` +
      `(mean of two runs each, in the order Berth, Distribution, Distribution, Berth: Berth ${format(first.berth.one, 0)} and ${format(second.berth.one, 0)}, ` +
      `${format(first.berth.eight, 0)} and ${format(second.berth.eight, 0)} MB/s; Distribution ${format(first.distribution.one, 0)} and ${format(second.distribution.one, 0)}, ` +
      `${format(first.distribution.eight, 0)} and ${format(second.distribution.eight, 0)})`,
  );
  // What the disk takes durably in the same minutes, without a network, a parser or a hash: the ceiling both
  // registries push against, which on a virtual disk moves by a third from one hour to the next.
  await b.settle();
  const disk = await diskCeiling(join(b.tmp, 'plain-disk'), CONCURRENCY, o.plainBytes);
  b.note(
    `The disk alone: ${CONCURRENCY} files of ${size} written at once in 1 MiB writes, each flushed every 32 MiB and at the end ` +
      `(as Berth's writer does): ${format(disk, 0)} MB/s; Berth's ${CONCURRENCY} at once reached ${format((100 * berth.eight) / disk, 0)}% of it, ` +
      `Distribution's ${format((100 * distribution.eight) / disk, 0)}%`,
  );
}

/** MB/s of `files` files of `bytes` each, written at once through the page cache and flushed (fdatasync). */
async function diskCeiling(dir: string, files: number, bytes: number): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const block = randomBytes(MiB);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: files }, async (_, i) => {
      const handle = await open(join(dir, `ceiling-${i}`), 'w');
      try {
        let flushing: Promise<void> | undefined;
        for (let at = 0; at < bytes; at += MiB) {
          await handle.write(block, 0, Math.min(MiB, bytes - at), at);
          if ((at + MiB) % (32 * MiB) === 0 && !flushing) flushing = handle.datasync().finally(() => (flushing = undefined));
        }
        await flushing;
        await handle.datasync();
      } finally {
        await handle.close();
      }
    }),
  );
  const mbPerS = (files * bytes) / 1e6 / seconds(t0);
  rmSync(dir, { recursive: true, force: true });
  return mbPerS;
}

// ----------------------------------------------------------------------------------- idle memory

const IDLE_SECONDS = 5;
const IDLE_TARGET_MIB = 64;

/** Resident memory of a freshly started server left alone IDLE_SECONDS after it first answered. */
async function idlePhase(b: ScaleBench): Promise<void> {
  const idleRss = async (reg: Registry) => {
    await sleep(IDLE_SECONDS * 1000);
    return memoryOf(reg.process.pid!).rss / MiB;
  };
  const open = `Idle resident memory ${IDLE_SECONDS} s after start, nothing stored`;
  const defaultMode = `${open}, Berth in public-index mode (its default; Distribution: the same figure) (MiB)`;
  const rss = await eachFresh(b, 'idle', async (reg) => {
    const mib = await idleRss(reg);
    b.add({ key: 'idle', label: `${open} (MiB)`, higherIsBetter: false, decimals: 0 }, reg, mib);
    if (reg.key === 'distribution') b.add({ key: 'idle-default', label: defaultMode, higherIsBetter: false, decimals: 0 }, reg, mib);
    log(`${reg.label}: ${format(mib, 0)} MiB resident after ${IDLE_SECONDS} s idle`);
    return mib;
  });
  const dir = join(b.tmp, 'idle-berth-default');
  const berth = await b.startBerth(dir, { BERTH_MODE: 'public-index' });
  let inDefaultMode: number;
  try {
    inDefaultMode = await idleRss(berth);
    b.add({ key: 'idle-default', label: defaultMode, higherIsBetter: false, decimals: 0 }, berth, inDefaultMode);
    log(`${berth.label} (public-index mode): ${format(inDefaultMode, 0)} MiB resident after ${IDLE_SECONDS} s idle`);
  } finally {
    await b.stop(berth);
  }
  const most = Math.max(rss.berth, inDefaultMode);
  b.note(`Target, idle memory: Berth at most ${IDLE_TARGET_MIB} MiB: ${format(rss.berth, 0)} MiB in open mode, ${format(inDefaultMode, 0)} MiB in public-index mode, ${verdict(most <= IDLE_TARGET_MIB)}`);
}

// --------------------------------------------------------------------------- pull-through cache, warm

const MIRROR_IMAGES = 20;
const MIRROR_PULLS = 2000;
const MIRROR_SECONDS = 30;
const ACCEPT_MANIFESTS = `${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json`;

/** One pull as an engine makes it: the manifest by tag, then its config and layers. */
async function pullImage(reg: Registry, repo: string, tag: string): Promise<void> {
  const reply = await send(reg, 'GET', `/v2/${repo}/manifests/${tag}`, { headers: { Accept: ACCEPT_MANIFESTS }, expect: [200], timeoutMs: REQUEST_TIMEOUT_MS });
  const manifest = JSON.parse(reply.body.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const { digest } of [manifest.config, ...manifest.layers]) {
    await send(reg, 'GET', `/v2/${repo}/blobs/${digest}`, { discard: true, expect: [200], timeoutMs: REQUEST_TIMEOUT_MS });
  }
}

/**
 * Warm pulls through a pull-through cache: an upstream Distribution holds 20 small images; Berth mirrors
 * it under a prefix (BERTH_MIRRORS), Distribution in proxy mode (proxy.remoteurl). Each cache is warmed
 * by one pull of every image, then pulled by tag 8 at once, as engines pull.
 */
async function mirrorPhase(b: ScaleBench): Promise<void> {
  const upstream = await b.startDistribution(join(b.tmp, 'mirror-upstream'));
  try {
    for (let i = 0; i < MIRROR_IMAGES; i++) await pushImage(upstream, `library/app${i}`, 'latest', [randomBytes(64 * 1024), randomBytes(256 * 1024)]);
    const what = `Pull-through cache, warm: ${MIRROR_IMAGES} images (config + 64 KiB + 256 KiB layers) pulled by tag 8 at once, from an upstream Distribution`;
    const caches = [
      { kind: 'berth', start: () => b.startBerth(join(b.tmp, 'mirror-berth'), { BERTH_MIRRORS: JSON.stringify([{ prefix: 'up', upstream: upstream.base, tagTtlSeconds: 300 }]) }), repo: (i: number) => `up/library/app${i}` },
      { kind: 'distribution', start: () => b.startDistribution(join(b.tmp, 'mirror-distribution'), ['proxy:', `  remoteurl: ${upstream.base}`]), repo: (i: number) => `library/app${i}` },
    ] as const;
    const rates: Record<string, number> = {};
    for (const cache of caches) {
      const reg = await cache.start();
      try {
        for (let i = 0; i < MIRROR_IMAGES; i++) await pullImage(reg, cache.repo(i), 'latest');
        await b.settle();
        const t0 = performance.now();
        const done = await pool(MIRROR_PULLS, CONCURRENCY, MIRROR_SECONDS, (i) => pullImage(reg, cache.repo(i % MIRROR_IMAGES), 'latest'));
        rates[cache.kind] = done / seconds(t0);
        b.add({ key: 'mirror-warm', label: `${what} (images/s)`, higherIsBetter: true, decimals: 0 }, reg, rates[cache.kind]!);
        log(`${reg.label}: ${count(done)} warm pulls through the cache, ${format(rates[cache.kind]!, 0)} images/s`);
      } catch (err) {
        throw withOutput(err, reg);
      } finally {
        await b.stop(reg);
      }
    }
    b.note(`Pull-through cache: warm pulls by tag, Berth ${format(rates.berth!, 0)} against Distribution's proxy mode ${format(rates.distribution!, 0)} images/s (Distribution asks its upstream for the tag on every pull; Berth at most once per tagTtlSeconds)`);
  } finally {
    await b.stop(upstream);
  }
}
