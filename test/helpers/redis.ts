// Spawns a real redis-server (Debian package) on a free loopback port for a test.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

/** Kills a redis process (no data of its to keep) and waits until it has exited. */
async function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGKILL');
  await exited;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Starts it again on the same port (after stop). */
  start(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;

  async function start(): Promise<void> {
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    await new Promise<void>((resolve, reject) => {
      proc.once('error', reject);
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        if (line.includes('Ready to accept connections')) resolve();
      });
    });
  }

  async function stop(): Promise<void> {
    if (child) await kill(child);
  }

  await start();
  return { url: `redis://127.0.0.1:${port}`, port, stop, start };
}

/** A Redis Sentinel (redis-server in sentinel mode) watching `master` under the name `name`. */
export async function startSentinel(master: TestRedis, name = 'mymaster'): Promise<{ port: number; stop(): Promise<void> }> {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'berth-sentinel-'));
  const config = join(dir, 'sentinel.conf');
  writeFileSync(
    config,
    [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`, ''].join('\n'),
  );
  const proc = spawn('redis-server', [config, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`redis sentinel exited with ${code}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      if (line.includes('+monitor master')) resolve();
    });
  });
  return {
    port,
    async stop() {
      await kill(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A Redis Cluster of three masters (no replicas) on free loopback ports, ready when the slots are covered. */
export async function startRedisCluster(): Promise<{ nodes: string; stop(): Promise<void> }> {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { spawnSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'berth-redis-cluster-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  const procs: ChildProcess[] = [];
  const stop = async () => {
    for (const proc of procs) await kill(proc);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const proc = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
          '--dir', dir, '--save', '', '--appendonly', 'no'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      procs.push(proc);
      await new Promise<void>((resolve, reject) => {
        proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
        createInterface({ input: proc.stdout! }).on('line', (line) => {
          if (line.includes('Ready to accept connections')) resolve();
        });
      });
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    for (let i = 0; ; i++) {
      const info = spawnSync('redis-cli', ['-p', String(ports[0]), 'cluster', 'info'], { encoding: 'utf8' }).stdout;
      if (info.includes('cluster_state:ok')) break;
      if (i > 200) throw new Error(`the cluster did not become ready:\n${info}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: ports.map((p) => `127.0.0.1:${p}`).join(','), stop };
}
