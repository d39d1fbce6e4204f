// An OCI runtime bundle (runtime-spec 1.0: config.json + rootfs/) for one container: the process comes
// from the image config's Entrypoint, Cmd, Env, WorkingDir and User, overridden as `docker run` does by
// --entrypoint, the command line, -e and -w.
import { existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join, posix, sep } from 'node:path';
import { ClientError } from './errors.ts';
import type { ImageConfig } from './pull.ts';
import { resolveDirectory } from './unpack.ts';

export interface RunSettings {
  /** Replaces the image's Entrypoint (and drops its Cmd, as docker does). */
  entrypoint?: string;
  /** Replaces the image's Cmd when not empty. */
  command: string[];
  /** K=V sets K; a bare K takes the value from berth's own environment (unset when it has none). */
  env: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
}

export interface ContainerProcess {
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's default capability set. */
const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Reads a file of the root filesystem, never one outside it that a symlink points at. */
function readInRoot(rootfs: string, path: string): string | undefined {
  const host = join(rootfs, path);
  if (!existsSync(host)) return undefined;
  const real = realpathSync(host);
  if (!real.startsWith(realpathSync(rootfs) + sep)) return undefined;
  return readFileSync(real, 'utf8');
}

/** Looks a user or group up by name or number in the image's /etc/passwd or /etc/group. */
function lookup(rootfs: string, file: string, name: string): { id: number; gid?: number; home?: string } | undefined {
  for (const line of (readInRoot(rootfs, file) ?? '').split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name || (/^\d+$/.test(name) && fields[2] === name)) {
      return { id: Number(fields[2]), ...(fields[3] ? { gid: Number(fields[3]) } : {}), ...(fields[5] ? { home: fields[5] } : {}) };
    }
  }
  return undefined;
}

function resolveUser(rootfs: string, spec: string | undefined): { uid: number; gid: number; home?: string } {
  if (!spec) return { uid: 0, gid: 0, home: lookup(rootfs, '/etc/passwd', '0')?.home ?? '/root' };
  const [userPart, groupPart] = spec.split(':') as [string, string | undefined];
  const user = lookup(rootfs, '/etc/passwd', userPart);
  if (!user && !/^\d+$/.test(userPart)) throw new ClientError(`user ${JSON.stringify(userPart)} is not in the image's /etc/passwd`);
  const uid = user?.id ?? Number(userPart);
  let gid = user?.gid ?? 0;
  if (groupPart) {
    const group = lookup(rootfs, '/etc/group', groupPart);
    if (!group && !/^\d+$/.test(groupPart)) throw new ClientError(`group ${JSON.stringify(groupPart)} is not in the image's /etc/group`);
    gid = group?.id ?? Number(groupPart);
  }
  return { uid, gid, ...(user?.home ? { home: user.home } : {}) };
}

function mergeEnv(base: string[], overrides: string[]): string[] {
  const env = new Map<string, string>();
  for (const entry of base) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry);
  }
  for (const entry of overrides) {
    const eq = entry.indexOf('=');
    const key = eq >= 0 ? entry.slice(0, eq) : entry;
    if (key === '') throw new ClientError(`invalid environment variable ${JSON.stringify(entry)}: expected KEY=VALUE or KEY`);
    if (eq >= 0) env.set(key, entry);
    else if (process.env[key] !== undefined) env.set(key, `${key}=${process.env[key]}`);
    else env.delete(key);
  }
  return [...env.values()];
}

/** The container's process, as docker would start it from this image and these flags. */
export function containerProcess(config: ImageConfig, settings: RunSettings, rootfs: string): ContainerProcess {
  const image = config.config ?? {};
  // --entrypoint "" clears the image's Entrypoint, as with docker.
  const entrypoint = settings.entrypoint !== undefined ? [settings.entrypoint].filter((e) => e !== '') : (image.Entrypoint ?? []);
  const command = settings.command.length > 0 ? settings.command : settings.entrypoint !== undefined ? [] : (image.Cmd ?? []);
  const args = [...entrypoint, ...command];
  if (args.length === 0) throw new ClientError('no command: the image has no Entrypoint or Cmd, and none was given');
  const user = resolveUser(rootfs, settings.user ?? (image.User || undefined));
  const base = image.Env ?? [];
  const env = mergeEnv(
    [
      ...(base.some((e) => e.startsWith('PATH=')) ? [] : [DEFAULT_PATH]),
      `HOSTNAME=${settings.hostname ?? 'berth'}`,
      `HOME=${user.home ?? '/'}`,
      ...base,
    ],
    settings.env,
  );
  const cwd = posix.normalize(settings.workdir || image.WorkingDir || '/');
  if (!cwd.startsWith('/')) throw new ClientError(`the working directory must be absolute, not ${JSON.stringify(cwd)}`);
  return { args, env, cwd, uid: user.uid, gid: user.gid };
}

/** The runtime-spec config.json for `process` in a bundle whose root filesystem is rootfs/. */
export function runtimeSpec(proc: ContainerProcess, hostname: string): object {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: proc.uid, gid: proc.gid },
      args: proc.args,
      env: proc.env,
      cwd: proc.cwd,
      capabilities: { bounding: CAPABILITIES, effective: CAPABILITIES, permitted: CAPABILITIES },
      // Below this machine's hard limits (see docs): a container must not ask for more than the host has.
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: false },
    hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      // No network namespace: the container shares the host's network, as `podman run --network host`.
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** Writes config.json into the bundle folder and makes sure the working directory exists in rootfs. */
export function writeBundle(bundleDir: string, proc: ContainerProcess, hostname: string): string {
  // Created as docker does when missing, through the image's symlinks but never out of its root.
  resolveDirectory(join(bundleDir, 'rootfs'), proc.cwd.split('/'), `working directory ${proc.cwd}`);
  const path = join(bundleDir, 'config.json');
  writeFileSync(path, `${JSON.stringify(runtimeSpec(proc, hostname), null, 2)}\n`);
  return path;
}
