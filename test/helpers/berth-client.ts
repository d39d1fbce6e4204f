// Drives the runtime client as a user does, through the berth command (`berth pull`, `berth run`, …),
// each test with its own local store (BERTH_HOME); and builds the images it pulls into an OCI layout.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { removeDir, run, type RunResult } from './clients.ts';
import { jsonBytes, type Descriptor, type Layer, type OciLayout, type TarEntry } from './oci-layout.ts';
import { berthArgs } from './built.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** Whether this environment lets a container run (new mount and PID namespaces). */
export const CAN_RUN = spawnSync('unshare', ['--mount', '--pid', '--fork', 'true']).status === 0;

/**
 * The output of `command` in a new container of `image`. Where namespaces are forbidden, no container can
 * run: then it says so and returns what `inspect` reads from the root filesystem berth run built for it.
 */
export async function containerOutput(home: string, image: string, command: string[], inspect: (rootfs: string) => string): Promise<string> {
  if (CAN_RUN) {
    const result = await berthCli(home, ['run', '--rm', image, ...command]);
    if (result.code !== 0) throw new Error(`berth run exited with ${result.code}: ${result.stderr}`);
    return result.stdout;
  }
  console.log('      (namespaces are forbidden here: checking the root filesystem berth run built instead)');
  const before = new Set(filesIn(home, 'containers'));
  await berthCli(home, ['run', image, ...command]);
  const created = filesIn(home, 'containers').filter((id) => !before.has(id));
  if (created.length !== 1) throw new Error(`expected one new container folder, found ${created.length}`);
  const dir = join(home, 'containers', created[0]!);
  try {
    return inspect(join(dir, 'rootfs'));
  } finally {
    removeDir(dir);
  }
}

export function clientHome(): string {
  return mkdtempSync(join(tmpdir(), 'berth-client-'));
}

/**
 * `berth ARGS…` with the given store; never rejects on a non-zero exit (tests check the code). `within`:
 * a command that runs berth (`unshare --user --map-root-user`, say).
 */
export function berthCli(
  home: string,
  args: string[],
  options: { env?: Record<string, string>; input?: Buffer; within?: string[] } = {},
): Promise<RunResult> {
  const [command, ...rest] = [...(options.within ?? []), process.execPath, ...berthArgs(args)];
  return run(command!, rest, {
    cwd: ROOT,
    env: { ...process.env, BERTH_HOME: home, ...options.env },
    allowFailure: true,
    timeoutMs: 120_000,
    ...(options.input ? { input: options.input } : {}),
  });
}

/** The files of a store folder (blobs/sha256, downloads, containers…), for checks of what a command left. */
export function filesIn(home: string, dir: string): string[] {
  try {
    return readdirSync(join(home, dir));
  } catch {
    return [];
  }
}

/** Adds an OCI image (any config, its rootfs.diff_ids filled in) to a layout; returns the manifest descriptor. */
export function addImage(layout: OciLayout, layers: Layer[], config: Record<string, unknown>): Descriptor {
  return layout.addManifest(jsonBytes({ ...config, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }), layers);
}

/**
 * Two layers for whiteouts: the upper one deletes opt/gone (`.wh.gone`) and makes data/ opaque, keeping
 * only what it adds there itself (data/sub/ it makes again, without the lower layer's file). `ls /opt /data`
 * afterwards prints `expected`.
 */
export const WHITEOUT_LAYERS: { lower: TarEntry[]; upper: TarEntry[]; expected: string } = {
  lower: entries({ 'opt/': '', 'opt/keep': 'kept', 'opt/gone': 'whited out', 'data/': '', 'data/old-1': '1', 'data/sub/': '', 'data/sub/old-2': '2' }),
  upper: entries({ 'opt/.wh.gone': '', 'data/': '', 'data/new': 'new', 'data/sub/': '', 'data/sub/new-2': '2', 'data/.wh..wh..opq': '' }),
  expected: '/data:\nnew\nsub\n\n/opt:\nkeep\n',
};

/** Tar entries from path → content; a path ending in "/" is a directory. */
export function entries(spec: Record<string, string>): TarEntry[] {
  return Object.entries(spec).map(([path, content]) => (path.endsWith('/') ? { path, type: 'directory' } : { path, content }));
}
