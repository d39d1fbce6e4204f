// Which Windows hosts can run a Windows container image, as Microsoft and containerd decide it: from the
// image's os.version and the host's build. One rule shared by the web catalog and `berth run`.

/** A Windows version as images and hosts spell it: major.minor.build[.revision]. */
export interface WindowsVersion {
  major: number;
  minor: number;
  build: number;
  revision?: number;
}

export type WindowsIsolation = 'process' | 'hyperv';

export interface WindowsVerdict {
  /** The isolation a container of this image gets on this host (process when both work), or null. */
  isolation: WindowsIsolation | null;
  /** One plain sentence that says why. */
  reason: string;
}

/** The builds that matter for containers, by the names people know them by. */
export const WINDOWS_BUILDS: ReadonlyArray<{ build: number; name: string }> = [
  { build: 14393, name: 'Windows Server 2016' },
  { build: 17763, name: 'Windows Server 2019' },
  { build: 20348, name: 'Windows Server 2022' },
  { build: 22621, name: 'Windows 11 22H2' },
  { build: 26100, name: 'Windows Server 2025' },
];

/**
 * From this host build on, process isolation accepts any image build from here up to the host's
 * (Windows Server 2022's stable ABI); below it, only the host's own build.
 */
export const STABLE_ABI_BUILD = 20348;

export class WindowsVersionError extends Error {
  constructor(text: string) {
    super(`not a Windows version: ${JSON.stringify(text)} (expected major.minor.build, e.g. 10.0.17763)`);
    this.name = 'WindowsVersionError';
  }
}

export function parseWindowsVersion(text: string): WindowsVersion {
  const match = /^(\d{1,5})\.(\d{1,5})\.(\d{1,6})(?:\.(\d{1,9}))?$/.exec(text.trim());
  if (!match) throw new WindowsVersionError(text);
  const [, major, minor, build, revision] = match;
  return { major: Number(major), minor: Number(minor), build: Number(build), ...(revision ? { revision: Number(revision) } : {}) };
}

/** "Windows Server 2019" for 10.0.17763.x; undefined for a build without a well-known name. */
export function windowsName(version: string | WindowsVersion): string | undefined {
  const v = typeof version === 'string' ? parseWindowsVersion(version) : version;
  if (v.major !== 10 || v.minor !== 0) return undefined;
  return WINDOWS_BUILDS.find((b) => b.build === v.build)?.name;
}

function describe(v: WindowsVersion): string {
  const name = windowsName(v);
  return `${v.major}.${v.minor}.${v.build}${name ? ` (${name})` : ''}`;
}

/**
 * Can an image of `imageVersion` run on a host of `hostVersion`, and with which isolation? The revision
 * (fourth number) never matters: since 1809 (17763) it need not match.
 */
export function windowsCompatibility(imageVersion: string | WindowsVersion, hostVersion: string | WindowsVersion): WindowsVerdict {
  const image = typeof imageVersion === 'string' ? parseWindowsVersion(imageVersion) : imageVersion;
  const host = typeof hostVersion === 'string' ? parseWindowsVersion(hostVersion) : hostVersion;
  if (image.major !== host.major || image.minor !== host.minor) {
    return { isolation: null, reason: `image ${describe(image)} and host ${describe(host)} differ in major.minor version` };
  }
  const processOk =
    host.build < STABLE_ABI_BUILD
      ? image.build === host.build
      : image.build >= STABLE_ABI_BUILD && image.build <= host.build;
  if (processOk) {
    return { isolation: 'process', reason: `image ${describe(image)} runs with process isolation on host ${describe(host)}` };
  }
  if (image.build <= host.build) {
    return {
      isolation: 'hyperv',
      reason: `image ${describe(image)} needs Hyper-V isolation on host ${describe(host)} (process isolation needs ${
        host.build < STABLE_ABI_BUILD ? 'the same build' : `a build from ${STABLE_ABI_BUILD} up to the host's`
      })`,
    };
  }
  return { isolation: null, reason: `image ${describe(image)} is newer than host ${describe(host)}: no isolation runs it` };
}

/** For the catalog: the verdict of every well-known host build for one image. */
export function windowsHostsFor(imageVersion: string): Array<{ build: number; name: string; verdict: WindowsVerdict }> {
  return WINDOWS_BUILDS.map(({ build, name }) => ({
    build,
    name,
    verdict: windowsCompatibility(imageVersion, { major: 10, minor: 0, build }),
  }));
}

/** The Windows base images Microsoft publishes, as their repositories name them (mcr.microsoft.com/windows/…). */
export type WindowsBaseImage = 'servercore' | 'nanoserver' | 'server';
const WINDOWS_BASE_IMAGES: ReadonlySet<string> = new Set<WindowsBaseImage>(['servercore', 'nanoserver', 'server']);

/**
 * Which Windows base image a foreign layer comes from, read from its URL's path as Microsoft's registry
 * names it (`https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:…`); undefined when the URL
 * does not say (an fwlink, a mirror with other paths). The build is the image's os.version, not the URL's.
 */
export function windowsBaseImage(url: string): WindowsBaseImage | undefined {
  let path: string[];
  try {
    path = new URL(url).pathname.split('/');
  } catch {
    return undefined;
  }
  for (let i = 0; i + 1 < path.length; i++) {
    if (path[i] === 'windows' && WINDOWS_BASE_IMAGES.has(path[i + 1]!)) return path[i + 1] as WindowsBaseImage;
  }
  return undefined;
}
