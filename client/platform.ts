// The platform an image is for (os/architecture/variant) and the choice of one manifest from an image
// index: the host's platform unless `--platform os/arch[/variant]` names another.
import { release } from 'node:os';
import { windowsCompatibility, windowsName } from '../platform/index.ts';
import { PlatformError } from './errors.ts';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

/** Node's process.arch in the GOARCH spelling image platforms use. */
const ARCHITECTURES: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): Platform {
  const architecture = ARCHITECTURES[process.arch] ?? process.arch;
  const os = process.platform === 'win32' ? 'windows' : 'linux';
  const armVersion = (process.config.variables as { arm_version?: string }).arm_version;
  const variant = architecture === 'arm64' ? 'v8' : architecture === 'arm' && armVersion ? `v${armVersion}` : undefined;
  return { os, architecture, ...(variant ? { variant } : {}), ...(os === 'windows' ? { 'os.version': release() } : {}) };
}

export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new PlatformError(`invalid platform ${JSON.stringify(text)}: expected os/arch[/variant], e.g. linux/arm64/v8`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return { os, architecture: architecture === 'x86_64' ? 'amd64' : architecture === 'aarch64' ? 'arm64' : architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** arm64 without a variant is v8; so containerd normalises it. */
function variantOf(p: Platform): string | undefined {
  return p.variant ?? (p.architecture === 'arm64' ? 'v8' : undefined);
}

/**
 * How well `candidate` serves `wanted`: 2 the same variant, 1 a candidate without variant (or a wanted
 * platform without one), 0 not at all.
 */
function score(candidate: Platform, wanted: Platform): number {
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return 0;
  const want = variantOf(wanted);
  const have = variantOf(candidate);
  if (want === have) return 2;
  if (!want || !have) return 1;
  return 0;
}

/** The best entry of an index for `wanted`, or a PlatformError that lists what the index offers. */
export function selectPlatform<T extends { platform?: Platform }>(entries: T[], wanted: Platform, image: string): T {
  let best: T | undefined;
  let bestScore = 0;
  for (const entry of entries) {
    const s = entry.platform ? score(entry.platform, wanted) : 0;
    if (s > bestScore) {
      best = entry;
      bestScore = s;
    }
  }
  if (best) return best;
  const offered = entries.filter((e) => e.platform).map((e) => e.platform!);
  const windows = offered.filter((p) => p.os === 'windows');
  if (wanted.os !== 'windows' && windows.length > 0 && windows.length === offered.length) throw windowsOnLinuxError(image, windows);
  throw new PlatformError(
    `${image} has no manifest for ${formatPlatform(wanted)} (it offers: ${offered.map(formatPlatform).join(', ') || 'nothing'})`,
  );
}

/** The message docker users know, with the facts of the image: its OS and os.version. */
export function windowsOnLinuxError(image: string, platforms: Platform[]): PlatformError {
  const versions = [...new Set(platforms.map((p) => p['os.version']).filter((v): v is string => !!v))].map((v) => {
    const name = /^\d+\.\d+\.\d+(\.\d+)?$/.test(v) ? windowsName(v) : undefined;
    return name ? `${v} (${name})` : v;
  });
  return new PlatformError(
    `${image} is a Windows image (os windows${versions.length ? `, os.version ${versions.join(', ')}` : ''}): ` +
      'Linux hosts cannot run Windows containers',
  );
}

/**
 * A host runs containers of its own OS only: on Linux a Windows image is refused with the message above;
 * on a Windows host the refusal says which isolation the image would need there (berth runs Linux
 * containers only).
 */
export function refuseForeignOs(name: string, image: Platform, host: Platform): void {
  if (image.os === host.os && image.os !== 'windows') return;
  if (image.os === 'windows' && host.os !== 'windows') throw windowsOnLinuxError(name, [image]);
  if (image.os === 'windows' && image['os.version'] && host['os.version']) {
    const verdict = windowsCompatibility(image['os.version'], host['os.version']);
    throw new PlatformError(`${name}: ${verdict.reason}; berth runs Linux containers only (use docker or containerd on this host)`);
  }
  throw new PlatformError(`${name} is a ${image.os} image; this host runs ${host.os} containers`);
}
