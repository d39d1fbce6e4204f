// CNCF Distribution (Debian's docker-registry) as a second, independent registry for client tests: the
// one that answers Basic challenges, with an htpasswd file (bcrypt, made by htpasswd from apache2-utils),
// or anonymous when given no users; its access log (one line per request) is kept for the tests to count.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from './redis.ts';
import { waitFor } from './wait.ts';

export interface TestDistribution {
  host: string;
  url: string;
  /** Its storage folder (docker/registry/v2/… under it). */
  dataDir: string;
  /** The access log so far, one request a line (`"GET /v2/… HTTP/1.1" 200 …`). */
  accessLog: string[];
  stop(): Promise<void>;
}

export async function startDistribution(options: { users?: Record<string, string> } = {}): Promise<TestDistribution> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-distribution-'));
  const htpasswd = join(dir, 'htpasswd');
  writeFileSync(htpasswd, '');
  for (const [user, password] of Object.entries(options.users ?? {})) {
    const made = spawnSync('htpasswd', ['-bB', htpasswd, user, password], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`htpasswd: ${made.stderr || made.error?.message}`);
  }
  const port = await freePort();
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      ...(options.users ? ['auth:', '  htpasswd:', '    realm: berth-test', `    path: ${htpasswd}`] : []),
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const accessLog: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => accessLog.push(line));
  child.stderr!.resume();
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}`);
    return fetch(`${url}/v2/`).then((r) => r.status === (options.users ? 401 : 200), () => false);
  }, 'Distribution to answer', 30_000);
  return {
    host: `127.0.0.1:${port}`,
    url,
    dataDir: join(dir, 'data'),
    accessLog,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
