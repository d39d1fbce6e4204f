// Runs a bundle: with runc or crun when one is installed (the runtimes docker and podman use), otherwise
// in new namespaces with util-linux `unshare` and its chroot (--root). Standard streams are the caller's;
// the container's exit code is returned (128 + signal number when a signal ended it).
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { constants as osConstants } from 'node:os';
import { ClientError } from './errors.ts';
import type { ContainerProcess } from './bundle.ts';

export type RuntimeName = 'runc' | 'crun' | 'unshare';
export type RuntimeChoice = RuntimeName | 'auto';

/** A program on PATH (and in the sbin folders, where Debian puts runc, even when PATH lacks them). */
export function findProgram(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs.filter((d) => d !== '')) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface Runtime {
  name: RuntimeName;
  path: string;
}

export function chooseRuntime(choice: RuntimeChoice): Runtime {
  const candidates: RuntimeName[] = choice === 'auto' ? ['runc', 'crun', 'unshare'] : [choice];
  for (const name of candidates) {
    const path = findProgram(name);
    if (path) return { name, path };
  }
  throw new ClientError(
    choice === 'auto' ? 'no container runtime: install runc or crun (or util-linux for unshare)' : `runtime ${choice} is not installed`,
  );
}

/** The command line that starts the container of a bundle. */
export function runtimeCommand(runtime: Runtime, bundle: { dir: string; id: string; stateDir: string; process: ContainerProcess }): string[] {
  if (runtime.name !== 'unshare') {
    return [runtime.path, '--root', bundle.stateDir, 'run', '--bundle', bundle.dir, `berth-${bundle.id}`];
  }
  const p = bundle.process;
  return [
    runtime.path,
    '--mount',
    '--pid',
    '--ipc',
    '--uts',
    '--fork',
    '--kill-child',
    // After --root, so /proc is the container's own.
    '--mount-proc=/proc',
    `--root=${join(bundle.dir, 'rootfs')}`,
    `--wd=${p.cwd}`,
    `--setgid=${p.gid}`,
    `--setuid=${p.uid}`,
    '--',
    ...p.args,
  ];
}

/** Starts the container in the foreground and resolves with its exit code. */
export function runContainer(runtime: Runtime, bundle: { dir: string; id: string; stateDir: string; process: ContainerProcess }): Promise<number> {
  mkdirSync(bundle.stateDir, { recursive: true, mode: 0o700 });
  const [command, ...args] = runtimeCommand(runtime, bundle);
  // runc takes the environment from config.json; unshare passes its own on to the command.
  const env = runtime.name === 'unshare' ? Object.fromEntries(bundle.process.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])) : process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(command!, args, { stdio: 'inherit', env });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP'];
    for (const s of signals) process.on(s, forward);
    child.once('error', (err) => reject(new ClientError(`${runtime.name}: ${err.message}`)));
    child.once('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      resolve(code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0));
    });
  });
}
