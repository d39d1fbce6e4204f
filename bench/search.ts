// Search over 10,000 repositories: writes 10,000 search-index documents (as pushes would have made them)
// into a fresh data folder, starts Berth on it (public-index mode, anonymous visitor), and times
// /api/v1/search for a few typical queries. A benchmark, not a test: `npx tsx bench/search.ts [count]`.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { FilesystemDriver, layout, searchDocument, type RepositoryEntry } from '../storage/index.ts';
import { buildBundle } from './lib.ts';

const COUNT = Number(process.argv[2] ?? 10_000);
const ROOT = resolve(import.meta.dirname, '..');
const WORDS = ['web', 'db', 'cache', 'proxy', 'tool', 'agent', 'runner', 'build', 'api', 'worker'];

async function seed(dir: string): Promise<void> {
  const driver = new FilesystemDriver(dir);
  const now = Date.now();
  for (let i = 0; i < COUNT; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, COUNT - i) }, async (_, j) => {
        const n = i + j;
        const windows = n % 5 === 0;
        const name = `${n % 50 === 0 ? 'library' : `team${n % 97}`}/${WORDS[n % WORDS.length]}-${n}`;
        const pushedAt = new Date(now - n * 60_000).toISOString();
        const os = windows ? 'windows' : 'linux';
        const architecture = n % 3 === 0 ? 'arm64' : 'amd64';
        const entry: RepositoryEntry = {
          name,
          description: `A ${WORDS[(n * 7) % WORDS.length]} image number ${n}`,
          visibility: n % 10 === 3 ? 'private' : 'public',
          tagCount: 1,
          newestTags: [{ tag: 'latest', digest: `sha256:${n.toString(16).padStart(64, '0')}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1000 + n, pushedAt, platforms: [{ os, architecture, osVersion: windows ? '10.0.17763.5329' : undefined, digest: `sha256:${n.toString(16).padStart(64, '0')}`, size: 1000 + n }], referrers: [] }],
          os: [os],
          architectures: [architecture],
          labels: { os: { [os]: 1 }, architectures: { [architecture]: 1 } },
          lastPushed: pushedAt,
          pulls: (n * 7919) % 100_000,
          version: 2,
        };
        await driver.putContent(layout.searchEntry(name), searchDocument(entry));
        await driver.putContent(layout.catalogEntry(name), '');
      }),
    );
  }
  // The visibility index marked made, as in a store written by this Berth (no repository here has settings,
  // so it has no entries): without the mark the first start would also make the index from every
  // repository's settings, which happens once per storage (an upgrade's cost, not a start's).
  await driver.putContent(layout.visibilityComplete, new Date().toISOString());
}

async function start(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  // The server as npm start runs it: the bundle, built from the sources as they are now.
  buildBundle(ROOT);
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'bin', 'berth.js'), 'serve'], {
    cwd: ROOT,
    env: { ...process.env, BERTH_LISTEN: '127.0.0.1:0', BERTH_DATA: dir, BERTH_MODE: 'public-index', BERTH_WORKERS: '1', BERTH_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((ok) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('berth is serving')) ok((JSON.parse(line) as { url: string }).url);
    });
  });
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-search-bench-'));
  await seed(dir);
  // What a restarted server finds: summaries on disk, not 100,000 files still being written back.
  execFileSync('sync');
  // The first start reads every summary (and then writes a snapshot); a restart reads the snapshot.
  for (const label of ['first start (reads every summary)', 'restart (reads the snapshot)']) {
    const started = performance.now();
    const server = await start(dir);
    const v2 = performance.now();
    await fetch(`${server.url}/v2/`);
    const answered = performance.now();
    await fetch(`${server.url}/api/v1/search`);
    console.log(`${label}: serving after ${(v2 - started).toFixed(0)} ms, /v2/ in ${(answered - v2).toFixed(0)} ms, first search of ${COUNT} repositories in ${(performance.now() - answered).toFixed(0)} ms`);
    if (label.startsWith('restart')) await queries(server.url);
    // Let the snapshot be written before the server stops (it is written in the background).
    for (let i = 0; i < 100 && !existsSync(join(dir, 'search-snapshot.json')); i++) await new Promise((r) => setTimeout(r, 100));
    await server.stop();
  }
  rmSync(dir, { recursive: true, force: true });
}

async function queries(url: string): Promise<void> {
  const queries = ['', 'q=web', 'os=windows', 'arch=arm64&sort=pulls', 'q=cache+image&sort=pushed&page=3', 'official=1'];
  for (const query of queries) {
    const times: number[] = [];
    let total = 0;
    for (let i = 0; i < 30; i++) {
      const start = performance.now();
      const body = (await (await fetch(`${url}/api/v1/search?${query}`)).json()) as { total: number };
      times.push(performance.now() - start);
      total = body.total;
    }
    times.sort((a, b) => a - b);
    console.log(`/api/v1/search?${query.padEnd(36)} ${String(total).padStart(5)} found  median ${times[15]!.toFixed(1)} ms  max ${times.at(-1)!.toFixed(1)} ms`);
  }
}

await main();
