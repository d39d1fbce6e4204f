// The catalog's search index: for each repository, the facts people browse by — tags, and for each tag
// the platforms (os, architecture, variant, os.version) read from the image config or from each child of
// an index, compressed size, last push, referrers — plus its description, visibility and pull count.
// Recomputed for one repository whenever its manifests or settings change (push, retag, delete), kept as
// one JSON document per repository under /search, and held in memory by every process, so a search never
// walks storage. Other processes learn of a change through the `_search` generation.
import type { BlobStore } from './blobs.ts';
import type { Generations } from './coordination.ts';
import type { StorageDriver } from './driver.ts';
import { baseName, decodeName, layout } from './layout.ts';
import type { Lock } from './lock.ts';
import type { ManifestStore } from './manifests.ts';
import { parseManifest } from './manifest-parser.ts';
import { tryParseDigest } from './reference.ts';
import type { RepositoryStore } from './repositories.ts';

export interface PlatformFacts {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  /** The platform's own manifest (the child of an index, or the image itself). */
  digest: string;
  /** Compressed: manifest's config plus layers, foreign layers included (what a pull downloads). */
  size: number;
}

export interface TagFacts {
  tag: string;
  digest: string;
  mediaType: string;
  size: number;
  pushedAt: string;
  platforms: PlatformFacts[];
  /** Signatures, SBOMs and other artifacts whose subject is this tag's manifest, by artifact type. */
  referrers: { artifactType: string; digest: string }[];
}

export interface RepositoryEntry {
  name: string;
  description: string;
  visibility?: 'public' | 'private';
  tags: TagFacts[];
  /** Every OS of every tag, and every architecture (with its variant, `arm/v7`). */
  os: string[];
  architectures: string[];
  lastPushed?: string;
  pulls: number;
  logo?: string;
}

export type SearchSort = 'name' | 'pushed' | 'pulls';

export interface SearchQuery {
  q?: string;
  os?: string;
  architecture?: string;
  official?: boolean;
  sort?: SearchSort;
  /** Only what this returns true for is found (the caller's visibility rule). */
  visible?: (entry: RepositoryEntry) => boolean;
}

/** A config larger than this is not an image config worth reading for its platform. */
const MAX_CONFIG_BYTES = 1024 * 1024;
const SEARCH = '_search';
/** Another process without shared generations (an admin command) may have changed a document. */
const RELOAD_AFTER_MS = 30_000;

export function architectureLabel(p: { architecture: string; variant?: string }): string {
  return p.variant ? `${p.architecture}/${p.variant}` : p.architecture;
}

/** `library/x` and one-part names are the official images, as on Docker Hub. */
export function isOfficial(name: string): boolean {
  return name.startsWith('library/') || !name.includes('/');
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

export class SearchIndex {
  private entries = new Map<string, RepositoryEntry>();
  private loadedAt?: number;
  private loadedTime = 0;
  private loading?: Promise<void>;
  /** Platform facts by manifest digest: immutable, so never stale. */
  private readonly platformCache = new Map<string, PlatformFacts[]>();
  private readonly pendingPulls = new Map<string, number>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly manifests: ManifestStore,
    private readonly blobs: BlobStore,
    private readonly repositories: RepositoryStore,
    private readonly lock: Lock,
    private readonly generations: Generations,
  ) {}

  /** Recomputes one repository's entry from storage (after a push, retag, delete or settings change). */
  async refresh(name: string): Promise<void> {
    await this.lock.run(`search:${name}`, async () => {
      const previous = await this.readEntry(name);
      const entry = (await this.manifests.exists(name)) ? await this.compute(name, previous?.pulls ?? 0) : undefined;
      if (!entry && !previous) return;
      if (entry) await this.driver.putContent(layout.searchEntry(name), JSON.stringify(entry));
      else await this.driver.delete(layout.searchEntry(name));
      await this.announce(name, entry);
    });
  }

  /** Counts a pull in memory; `flushPulls` adds the counts to storage (a write per repository, not per pull). */
  countPull(name: string): void {
    this.pendingPulls.set(name, (this.pendingPulls.get(name) ?? 0) + 1);
  }

  async flushPulls(): Promise<void> {
    const pending = [...this.pendingPulls];
    this.pendingPulls.clear();
    for (const [name, count] of pending) {
      await this.lock.run(`search:${name}`, async () => {
        const entry = await this.readEntry(name);
        if (!entry) return;
        entry.pulls += count;
        await this.driver.putContent(layout.searchEntry(name), JSON.stringify(entry));
        await this.announce(name, entry);
      });
    }
  }

  /** One repository's entry, current. */
  async entry(name: string): Promise<RepositoryEntry | undefined> {
    await this.fresh();
    return this.entries.get(name);
  }

  async search(query: SearchQuery): Promise<RepositoryEntry[]> {
    await this.fresh();
    const words = (query.q ?? '').toLowerCase().split(/\s+/).filter(Boolean);
    const found: RepositoryEntry[] = [];
    for (const entry of this.entries.values()) {
      if (query.os && !entry.os.includes(query.os)) continue;
      if (query.architecture && !entry.architectures.includes(query.architecture)) continue;
      if (query.official && !isOfficial(entry.name)) continue;
      if (words.length > 0) {
        const text = `${entry.name} ${entry.description}`.toLowerCase();
        if (!words.every((w) => text.includes(w))) continue;
      }
      if (query.visible && !query.visible(entry)) continue;
      found.push(entry);
    }
    const byName = (a: RepositoryEntry, b: RepositoryEntry) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    if (query.sort === 'pushed') found.sort((a, b) => (b.lastPushed ?? '').localeCompare(a.lastPushed ?? '') || byName(a, b));
    else if (query.sort === 'pulls') found.sort((a, b) => b.pulls - a.pulls || byName(a, b));
    else found.sort(byName);
    return found;
  }

  /** Writes an entry into memory and tells the other processes; stays loaded when ours was the only change. */
  private async announce(name: string, entry: RepositoryEntry | undefined): Promise<void> {
    if (entry) this.entries.set(name, entry);
    else this.entries.delete(name);
    const before = this.loadedAt;
    await this.generations.bump(SEARCH);
    const now = await this.generations.current(SEARCH);
    this.loadedAt = before !== undefined && now === before + 1 ? now : undefined;
  }

  private async fresh(): Promise<void> {
    const generation = await this.generations.current(SEARCH);
    if (generation !== undefined && generation === this.loadedAt) {
      // Only the age says to look again (a change no generation announced): answer from memory meanwhile.
      if (Date.now() - this.loadedTime >= RELOAD_AFTER_MS) this.loading ??= this.load(generation).catch(() => {}).finally(() => (this.loading = undefined));
      return;
    }
    this.loading ??= this.load(generation).finally(() => (this.loading = undefined));
    await this.loading;
  }

  private async load(generation: number | undefined): Promise<void> {
    const paths = await this.driver.list(layout.searchDir);
    const entries = new Map<string, RepositoryEntry>();
    const batch = 64;
    for (let i = 0; i < paths.length; i += batch) {
      await Promise.all(
        paths.slice(i, i + batch).map(async (path) => {
          const name = decodeName(baseName(path).replace(/\.json$/, ''));
          const entry = await this.readEntry(name);
          if (entry) entries.set(name, entry);
        }),
      );
    }
    this.entries = entries;
    this.loadedAt = generation;
    this.loadedTime = Date.now();
  }

  private async readEntry(name: string): Promise<RepositoryEntry | undefined> {
    const raw = await this.driver.getContent(layout.searchEntry(name));
    return raw ? (JSON.parse(raw.toString()) as RepositoryEntry) : undefined;
  }

  private async compute(name: string, pulls: number): Promise<RepositoryEntry> {
    const settings = (await this.repositories.settings(name)) ?? {};
    const tags: TagFacts[] = [];
    for (const tag of await this.manifests.tags(name)) {
      const facts = await this.tagFacts(name, tag);
      if (facts) tags.push(facts);
    }
    const os = new Set<string>();
    const architectures = new Set<string>();
    for (const t of tags) for (const p of t.platforms) {
      os.add(p.os);
      architectures.add(architectureLabel(p));
    }
    const lastPushed = tags.map((t) => t.pushedAt).sort().at(-1);
    return {
      name,
      description: settings.description ?? '',
      visibility: settings.visibility,
      tags: tags.sort((a, b) => b.pushedAt.localeCompare(a.pushedAt) || a.tag.localeCompare(b.tag)),
      os: [...os].sort(),
      architectures: [...architectures].sort(),
      lastPushed,
      pulls,
      logo: settings.logo,
    };
  }

  private async tagFacts(name: string, tag: string): Promise<TagFacts | undefined> {
    const manifest = await this.manifests.get(name, { kind: 'tag', tag });
    const link = await this.driver.stat(layout.tag(name, tag));
    if (!manifest || !link) return undefined;
    const platforms = await this.platformsOf(name, manifest.digest, manifest.content, manifest.mediaType);
    const digest = tryParseDigest(manifest.digest)!;
    const referrers = (await this.manifests.referrers(name, digest)).map((r) => ({ artifactType: r.artifactType ?? r.mediaType, digest: r.digest }));
    return {
      tag,
      digest: manifest.digest,
      mediaType: manifest.mediaType,
      size: platforms.reduce((sum, p) => sum + p.size, 0),
      pushedAt: link.modifiedAt.toISOString(),
      platforms,
      referrers,
    };
  }

  /** The platforms of a manifest: its config's, or each platform child's of an index (attestations left out). */
  private async platformsOf(name: string, digest: string, content: Buffer, mediaType: string): Promise<PlatformFacts[]> {
    const cached = this.platformCache.get(digest);
    if (cached) return cached;
    const parsed = parseManifest(content, mediaType);
    const platforms: PlatformFacts[] = [];
    if (parsed.isIndex) {
      // The parser keeps descriptors only; an index child's declared platform is read from the JSON itself.
      const declaredPlatforms = (JSON.parse(content.toString()) as { manifests: { platform?: Record<string, unknown> }[] }).manifests;
      for (const [i, child] of parsed.manifests.entries()) {
        const childManifest = await this.manifests.get(name, { kind: 'digest', digest: child.digest });
        const childPlatforms = childManifest
          ? await this.platformsOf(name, childManifest.digest, childManifest.content, childManifest.mediaType)
          : [];
        const declared = declaredPlatforms[i]?.platform;
        for (const p of childPlatforms) {
          if (p.os === 'unknown') continue;
          platforms.push({ ...p, osVersion: p.osVersion ?? str(declared?.['os.version']) });
        }
      }
    } else if (parsed.config) {
      const size = parsed.config.size + parsed.layers.reduce((sum, l) => sum + l.size, 0);
      const config = parsed.config.size <= MAX_CONFIG_BYTES ? await this.blobs.read(parsed.config.digest) : undefined;
      let facts: Record<string, unknown> = {};
      try {
        facts = config ? (JSON.parse(config.toString()) as Record<string, unknown>) : {};
      } catch {
        // an artifact's config need not be JSON: it has no platform
      }
      const os = str(facts.os);
      const architecture = str(facts.architecture);
      if (os && architecture) {
        platforms.push({ os, architecture, variant: str(facts.variant), osVersion: str(facts['os.version']), digest, size });
      }
    }
    if (this.platformCache.size > 50_000) this.platformCache.clear();
    this.platformCache.set(digest, platforms);
    return platforms;
  }
}
