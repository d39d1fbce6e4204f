// The mirror room's front door: pull-through caches of other registries (configured in `mirrors`).
// The server asks `route` which mirror, if any, serves a request's repository name, then that mirror to
// make a manifest or blob servable from storage; everything else is served as for any repository.
import type { MirrorConfig } from './config.ts';
import { Mirror, type MirrorDeps } from './mirror.ts';

export { mirrorsSchema, mirrorSchema, withoutSecrets, type MirrorConfig } from './config.ts';
export { Mirror, type BlobSource, type MirrorDeps, type MirrorLogger, type MirrorMetrics } from './mirror.ts';
export { BlobFill, type StreamedFill } from './fill.ts';
export { FollowedFill, type FillNotice } from './shared-fill.ts';
export { Upstream, UpstreamError, UpstreamDigestError } from './upstream.ts';

export interface MirrorRoute {
  mirror: Mirror;
  /** The repository in storage: always under the mirror's prefix. */
  name: string;
}

export class Mirrors {
  readonly all: Mirror[];
  private readonly dockerMirror?: Mirror;

  constructor(configs: readonly MirrorConfig[], private readonly deps: MirrorDeps) {
    this.all = configs.map((config) => new Mirror(config, deps));
    this.dockerMirror = this.all.find((m) => m.config.dockerMirror);
  }

  /**
   * The mirror that serves `name`, and the repository it is stored as:
   * - `<prefix>/<name>`: that mirror, for every request (writes are refused by the caller);
   * - a read with `?ns=<prefix>` (containerd's hosts.toml mirrors): that mirror, as `<prefix>/<name>`;
   * - a read of any other name (docker's registry-mirrors): the mirror marked dockerMirror, as
   *   `<prefix>/<name>`, unless a local repository has that name. A local repository always wins, and the
   *   mirrored copy stays reachable under its prefix: neither ever hides the other.
   */
  async route(name: string, read: boolean, ns?: string): Promise<MirrorRoute | undefined> {
    const prefixed = this.all.find((m) => name.startsWith(`${m.prefix}/`));
    if (prefixed) return { mirror: prefixed, name };
    if (!read) return undefined;
    const byNs = ns === undefined ? undefined : this.all.find((m) => m.prefix === ns);
    if (byNs) return { mirror: byNs, name: `${byNs.prefix}/${name}` };
    if (this.dockerMirror && !(await this.deps.storage.manifests.exists(name))) {
      return { mirror: this.dockerMirror, name: `${this.dockerMirror.prefix}/${name}` };
    }
    return undefined;
  }

  /** The mirror whose repositories include `name` (for the catalog's "mirror of …"). */
  of(name: string): Mirror | undefined {
    return this.all.find((m) => name.startsWith(`${m.prefix}/`));
  }

  /** What a mirrored repository is a copy of, as an image reference names it (`registry-1.docker.io/library/alpine`). */
  mirroredFrom(name: string): string | undefined {
    const mirror = this.of(name);
    return mirror && `${new URL(mirror.upstream.origin).host}/${name.slice(mirror.prefix.length + 1)}`;
  }
}
