// A tiny runnable Linux image made from the static busybox of the Debian package busybox-static: one
// layer with /bin/busybox and the applet symlinks a test runs. No network and no docker build needed.
import { readFileSync } from 'node:fs';
import { dockerArchive, hostArchitecture, imageConfig, makeLayer, sha256, type Layer } from './oci-layout.ts';

/** Where busybox-static installs its binary. */
export const BUSYBOX_PATH = '/bin/busybox';

const APPLETS = ['sh', 'echo', 'cat', 'ls', 'true', 'false', 'env', 'uname', 'id', 'sleep'];

export interface BusyboxImage {
  layer: Layer;
  config: Buffer;
  /** The config digest: the image ID docker and podman report. */
  configDigest: string;
  /** A `docker save` archive of the image under the given tags. */
  archive(repoTags: string[]): Promise<Buffer>;
}

export async function busyboxImage(label: string): Promise<BusyboxImage> {
  const busybox = readFileSync(BUSYBOX_PATH);
  const layer = await makeLayer([
    { path: 'bin/', type: 'directory' },
    { path: 'bin/busybox', content: busybox, mode: 0o755 },
    ...APPLETS.map((name) => ({ path: `bin/${name}`, type: 'symlink' as const, target: 'busybox' })),
    { path: 'dev/', type: 'directory' },
    { path: 'etc/', type: 'directory' },
    { path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { path: 'etc/group', content: 'root:x:0:\n' },
    { path: 'proc/', type: 'directory' },
    { path: 'root/', type: 'directory', mode: 0o700 },
    { path: 'sys/', type: 'directory' },
    { path: 'tmp/', type: 'directory', mode: 0o1777 },
  ]);
  const config = imageConfig({
    architecture: hostArchitecture(),
    os: 'linux',
    diffIds: [layer.diffId],
    cmd: ['sh'],
    env: ['PATH=/bin'],
    labels: { 'org.example.berth.e2e': label },
  });
  return {
    layer,
    config,
    configDigest: sha256(config),
    archive: (repoTags) => dockerArchive({ repoTags, config, layers: [layer] }),
  };
}
