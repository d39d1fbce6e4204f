// Runs real OCI clients (skopeo, docker with its own dockerd, podman) for end-to-end tests, each with its
// own configuration files and state in a temporary folder; nothing in /etc or $HOME is read for
// configuration or written. What these tools still write outside their folder, as root, on any machine:
// podman its blob info cache (/var/lib/containers/cache) and netavark's lock folder
// (/run/containers/networks); dockerd /run/docker/plugins and containerd's shim sockets
// (/run/containerd/s). See /work/shared/CLIENTS.md for what works on our machines and why.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait.ts';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Bytes written to stdin (stdin is closed either way). */
  input?: Buffer;
  timeoutMs?: number;
  /** Resolve with a non-zero exit code instead of rejecting. */
  allowFailure?: boolean;
}

/** Runs a command to completion; rejects with its output when it fails or outlives the timeout. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => stdout.push(c));
    child.stderr.on('data', (c: Buffer) => stderr.push(c));
    child.stdin.on('error', () => {}); // a command that exits without reading stdin
    child.stdin.end(options.input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const describe = () => `${command} ${args.join(' ')}`;
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${describe()}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const result = {
        code: code ?? -1,
        stdout: Buffer.concat(stdout).toString(),
        stderr: Buffer.concat(stderr).toString(),
      };
      if (timedOut) {
        reject(new Error(`${describe()}: no result after ${timeoutMs} ms\n${tail(result.stderr)}`));
      } else if (result.code !== 0 && !options.allowFailure) {
        reject(
          new Error(
            `${describe()} exited with ${code ?? signal}\n--- stdout\n${tail(result.stdout)}\n--- stderr\n${tail(result.stderr)}`,
          ),
        );
      } else {
        resolve(result);
      }
    });
  });
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `berth-e2e-${prefix}-`));
}

/** Unmounts whatever a daemon left mounted below `dir` (deepest first), so the folder can be removed. */
export function unmountUnder(dir: string): void {
  const mountPoints = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of mountPoints) spawnSync('umount', ['-l', p]);
}

/** Removes a temporary folder, after unmounting what is mounted below it. */
export function removeDir(dir: string): void {
  unmountUnder(dir);
  rmSync(dir, { recursive: true, force: true });
}

const ACCEPT_ANYTHING_POLICY = JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] });

// ---------------------------------------------------------------------------------------------- skopeo

/**
 * skopeo with its own signature policy and its own, initially empty, blob info cache. As root, skopeo
 * keeps that cache in /var/lib/containers/cache and uses it to mount blobs it saw in another repository
 * instead of uploading them; treated as a rootless user (the _CONTAINERS_ROOTLESS_UID variable that
 * containers/image reads for its effective uid) it keeps it under $XDG_DATA_HOME/containers/cache.
 */
export class Skopeo {
  readonly dir: string;
  readonly cacheDir: string;
  private readonly policy: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor() {
    this.dir = tempDir('skopeo');
    this.policy = join(this.dir, 'policy.json');
    writeFileSync(this.policy, ACCEPT_ANYTHING_POLICY);
    const dataHome = join(this.dir, 'data');
    this.cacheDir = join(dataHome, 'containers', 'cache');
    mkdirSync(this.cacheDir, { recursive: true });
    this.env = {
      ...process.env,
      _CONTAINERS_ROOTLESS_UID: '1000',
      XDG_DATA_HOME: dataHome,
      XDG_RUNTIME_DIR: join(this.dir, 'run'),
      CONTAINERS_REGISTRIES_CONF: join(this.dir, 'registries.conf'),
    };
    mkdirSync(join(this.dir, 'run'), { recursive: true, mode: 0o700 });
    writeFileSync(join(this.dir, 'registries.conf'), 'unqualified-search-registries = []\n');
  }

  /** `skopeo --policy OWN args…` */
  run(args: string[], options: Omit<RunOptions, 'env'> = {}): Promise<RunResult> {
    return run('skopeo', ['--policy', this.policy, ...args], { timeoutMs: 120_000, ...options, env: this.env });
  }

  async json<T>(args: string[]): Promise<T> {
    return JSON.parse((await this.run(args)).stdout) as T;
  }

  cleanup(): void {
    removeDir(this.dir);
  }
}

// ---------------------------------------------------------------------------------------------- docker

export interface DockerEngine {
  /** Runs the docker client against this engine (`options.env` adds to the engine's environment). */
  docker(args: string[], options?: RunOptions): Promise<RunResult>;
  /** The docker client's config folder (DOCKER_CONFIG): where `docker login` keeps credentials. */
  configDir: string;
  /** What dockerd logged so far. */
  log(): string;
  /** The socket of the containerd this dockerd started (for ctr). */
  containerdSocket: string;
  stop(): Promise<void>;
}

function dockerdMajorVersion(): number {
  const out = spawnSync('dockerd', ['--version'], { encoding: 'utf8' });
  const match = /version (\d+)\./i.exec(out.stdout ?? '');
  if (!match) throw new Error(`dockerd --version: ${out.error?.message ?? out.stdout ?? ''}`);
  return Number(match[1]);
}

/**
 * Starts a private dockerd (no bridge, no iptables, vfs storage) with its own data root, exec root,
 * socket, daemon.json and client config, as CLIENTS.md shows; resolves once `docker info` answers.
 */
export async function startDockerd(options: { insecureRegistries: string[]; registryMirrors?: string[] }): Promise<DockerEngine> {
  const dir = tempDir('dockerd');
  const socket = join(dir, 'docker.sock');
  const configFile = join(dir, 'daemon.json');
  // dockerd before 23 writes a trust key to /etc/docker/key.json unless its config names another place.
  writeFileSync(configFile, JSON.stringify(dockerdMajorVersion() < 23 ? { 'deprecated-key-path': join(dir, 'key.json') } : {}));
  mkdirSync(join(dir, 'client'));
  // A client config that names any credential source keeps docker from picking a default credential store:
  // with pass installed (the client's tests use docker-credential-pass) it would choose pass, whose store
  // is not initialised here, and `docker login` would fail. Logins go to this config.json instead.
  writeFileSync(join(dir, 'client', 'config.json'), JSON.stringify({ credHelpers: { 'unused.invalid': 'none' } }));
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(dir, 'client') };
  delete env.DOCKER_CONTEXT;
  delete env.DOCKER_TLS_VERIFY;
  const args = [
    '--host',
    `unix://${socket}`,
    '--data-root',
    join(dir, 'data'),
    '--exec-root',
    join(dir, 'exec'),
    '--pidfile',
    join(dir, 'dockerd.pid'),
    '--config-file',
    configFile,
    '--iptables=false',
    '--ip6tables=false',
    '--bridge=none',
    '--storage-driver=vfs',
    ...options.insecureRegistries.flatMap((r) => ['--insecure-registry', r]),
    ...(options.registryMirrors ?? []).flatMap((r) => ['--registry-mirror', r]),
  ];
  const logChunks: Buffer[] = [];
  const daemon: ChildProcess = spawn('dockerd', args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  daemon.stdout!.on('data', (c: Buffer) => logChunks.push(c));
  daemon.stderr!.on('data', (c: Buffer) => logChunks.push(c));
  let spawnFailed = false;
  const spawnError = new Promise<Error>((resolve) =>
    daemon.once('error', (err) => {
      spawnFailed = true;
      resolve(err);
    }),
  );
  const log = () => Buffer.concat(logChunks).toString();

  const docker = (dockerArgs: string[], runOptions: RunOptions = {}) =>
    run('docker', dockerArgs, { timeoutMs: 120_000, ...runOptions, env: { ...env, ...runOptions.env } });

  async function stop(): Promise<void> {
    if (!spawnFailed && daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise<void>((r) => daemon.once('exit', () => r()));
      daemon.kill('SIGTERM');
      const killTimer = setTimeout(() => daemon.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(killTimer);
    }
    removeDir(dir);
  }

  try {
    await waitFor(async () => {
      if (daemon.exitCode !== null || daemon.signalCode !== null) {
        throw new Error(`dockerd exited with ${daemon.exitCode ?? daemon.signalCode}:\n${tail(log())}`);
      }
      const info = await Promise.race([
        docker(['info', '--format', '{{.ServerVersion}}'], { allowFailure: true, timeoutMs: 10_000 }),
        spawnError.then((err) => {
          throw new Error(`dockerd: ${err.message}`);
        }),
      ]);
      return info.code === 0 && info.stdout.trim() !== '';
    }, '`docker info` to answer', 60_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { docker, configDir: join(dir, 'client'), log, containerdSocket: join(dir, 'exec', 'containerd', 'containerd.sock'), stop };
}

// ---------------------------------------------------------------------------------------------- podman

export interface Podman {
  podman(args: string[], options?: Omit<RunOptions, 'env'>): Promise<RunResult>;
  /** The signature policy to pass as --signature-policy to pull / push / load. */
  policy: string;
  cleanup(): Promise<void>;
}

/**
 * podman with its own storage.conf (vfs, graph and run roots in a temp folder), registries.conf (the
 * given hosts are insecure, i.e. plain HTTP) and containers.conf (host network namespace, runc, cgroupfs,
 * file events, rlimits under the machine's hard limits), through CONTAINERS_* environment variables.
 */
export function podmanSetup(options: { insecureRegistries: string[]; registriesConf?: string }): Podman {
  const dir = tempDir('podman');
  const storageConf = join(dir, 'storage.conf');
  const registriesConf = join(dir, 'registries.conf');
  const containersConf = join(dir, 'containers.conf');
  const policy = join(dir, 'policy.json');
  writeFileSync(
    storageConf,
    `[storage]\ndriver = "vfs"\nrunroot = "${join(dir, 'run')}"\ngraphroot = "${join(dir, 'storage')}"\n`,
  );
  writeFileSync(
    registriesConf,
    'unqualified-search-registries = []\n' +
      options.insecureRegistries.map((r) => `\n[[registry]]\nlocation = "${r}"\ninsecure = true\n`).join('') +
      (options.registriesConf ?? ''),
  );
  writeFileSync(
    containersConf,
    [
      '[containers]',
      'netns = "host"',
      'default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${join(dir, 'events.log')}"`,
      'runtime = "runc"',
      `tmp_dir = "${join(dir, 'tmp')}"`,
      `volume_path = "${join(dir, 'volumes')}"`,
      `static_dir = "${join(dir, 'storage', 'libpod')}"`,
      '[network]',
      // Named explicitly so podman neither probes /etc/cni/net.d nor keeps its lock in /etc/containers.
      'network_backend = "netavark"',
      `network_config_dir = "${join(dir, 'networks')}"`,
      '',
    ].join('\n'),
  );
  writeFileSync(policy, ACCEPT_ANYTHING_POLICY);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTAINERS_STORAGE_CONF: storageConf,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    CONTAINERS_CONF: containersConf,
    // (podman's blob info cache stays in /var/lib/containers/cache: treating podman as rootless would
    // change far more than that cache. Each test's Berth is new, so stale entries only cost a failed mount.)
    TMPDIR: join(dir, 'tmpdir'),
  };
  mkdirSync(join(dir, 'tmpdir'));
  const podman = (args: string[], runOptions: Omit<RunOptions, 'env'> = {}) =>
    run('podman', args, { timeoutMs: 120_000, ...runOptions, env });
  return {
    podman,
    policy,
    async cleanup() {
      await podman(['rm', '--all', '--force'], { allowFailure: true });
      await podman(['rmi', '--all', '--force'], { allowFailure: true });
      removeDir(dir);
    },
  };
}
