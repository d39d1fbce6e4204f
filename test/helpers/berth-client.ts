// Drives the runtime client as a user does, through the berth command (`berth pull`, `berth run`, …),
// each test with its own local store (BERTH_HOME); and builds the images it pulls into an OCI layout.
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run, type RunResult } from './clients.ts';
import { jsonBytes, MediaTypes, type Descriptor, type Layer, type OciLayout } from './oci-layout.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

export function clientHome(): string {
  return mkdtempSync(join(tmpdir(), 'berth-client-'));
}

/** `berth ARGS…` with the given store; never rejects on a non-zero exit (tests check the code). */
export function berthCli(home: string, args: string[], options: { env?: Record<string, string>; input?: Buffer } = {}): Promise<RunResult> {
  return run(process.execPath, ['--import', 'tsx', join(ROOT, 'bin', 'berth.ts'), ...args], {
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

/** Adds an OCI image (config with rootfs.diff_ids filled in, gzip layers) to a layout; returns the manifest descriptor. */
export function addImage(layout: OciLayout, layers: Layer[], config: Record<string, unknown>): Descriptor {
  const configBytes = jsonBytes({ ...config, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } });
  const manifest = jsonBytes({
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: layout.addBlob(MediaTypes.ociConfig, configBytes),
    layers: layers.map((l) => layout.addBlob(MediaTypes.ociLayerGzip, l.gz)),
  });
  return layout.addBlob(MediaTypes.ociManifest, manifest);
}
