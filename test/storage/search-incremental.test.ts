// The search index is kept piece by piece (only the tags a write changed); this checks, after every step
// of random pushes, retags, deletes, index pushes, referrers and settings changes, that what it keeps equals
// a full recomputation from storage — on the replica that wrote, on a second replica sharing storage and
// Redis, and after a restart. And that a hostile nested index costs its distinct manifests only.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createRedisCoordination,
  createStorage,
  FilesystemDriver,
  filesystemStorage,
  layout,
  MAX_PLATFORMS,
  NEWEST_TAGS,
  parseDigest,
  type Coordination,
  summaryOf,
  type ListPage,
  type Storage,
} from '../../storage/index.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { OCI_INDEX, OCI_MANIFEST, pushImage, putBlob, putManifest } from '../helpers/storage-images.ts';

const NAME = 'acme/app';


/** A small seeded generator (mulberry32): a failing sequence can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}




/** Counts a driver's reads, for the tests that bound a request's work. */
class CountingDriver extends FilesystemDriver {
  gets = 0;
  lists = 0;
  override getContent(path: string) {
    this.gets++;
    return super.getContent(path);
  }
  override getFolderContents(path: string, each: (name: string, content: Buffer) => void) {
    return super.getFolderContents(path, (name, content) => {
      this.gets++;
      each(name, content);
    });
  }
  override list(path: string, page?: ListPage) {
    this.lists++;
    return super.list(path, page);
  }
}

const PLATFORMS: Record<string, string>[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64' },
  { os: 'linux', architecture: 'arm', variant: 'v7' },
  { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.5329' },
];

describe('storage: the search index kept per tag', () => {
  let dir: string;
  let redis: TestRedis;
  const coordinations: Coordination[] = [];

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-search-prop-'));
  });
  afterEach(async () => {
    for (const c of coordinations.splice(0)) await c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function replica(): Promise<Storage> {
    const coordination = await createRedisCoordination({ url: redis.url, keyPrefix: `berth-test-${dir}:` });
    coordinations.push(coordination);
    return createStorage(new FilesystemDriver(dir), undefined, coordination);
  }

  /** The kept summary and every tag page equal a full recomputation, as this replica sees them. */
  async function expectConsistent(storage: Storage, label: string): Promise<void> {
    // Compared as stored: JSON, where an absent field and an undefined one are the same.
    const asStored = <T>(value: T): T => (value === undefined ? value : JSON.parse(JSON.stringify(value)));
    const expected = asStored(await storage.search.recompute(NAME));
    const kept = asStored(await storage.search.entry(NAME));
    expect(kept, label).to.deep.equal(expected);
    // What searches find comes from memory, kept in step by the replica's generations.
    const listed = asStored((await storage.search.search({})).find((e) => e.name === NAME));
    expect(listed, label).to.deep.equal(expected && asStored(summaryOf(expected)));
    if (!expected) return;
    const all = await storage.search.tagPage(NAME, { offset: 0, n: 10_000 });
    expect(all.total, label).to.equal(expected.tagCount);
    expect(asStored(all.tags.slice(0, NEWEST_TAGS)), label).to.deep.equal(expected.newestTags);
    const tags = await storage.manifests.tags(NAME);
    expect(all.tags.map((t) => t.tag).sort(), label).to.deep.equal([...tags].sort());
  }

  it('equals a full recomputation after every step of 150 random writes, on both replicas and after a restart', async function () {
    this.timeout(240_000);
    const next = random(12);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const a = await replica();
    const b = await replica();
    const tagPool = Array.from({ length: 14 }, (_, i) => `t${i}`);
    const images: string[] = [];
    for (let step = 0; step < 150; step++) {
      const via = next() < 0.5 ? a : b;
      const tags = await via.manifests.tags(NAME);
      const roll = next();
      let what: string;
      if (roll < 0.3 || images.length === 0) {
        const tag = pick(tagPool);
        what = `push ${tag}`;
        images.push((await pushImage(via, NAME, tag, pick(PLATFORMS), `s${step}`)).digest);
      } else if (roll < 0.45) {
        // A burst of concurrent retags through both replicas: the updates coalesce.
        const targets = Array.from({ length: 6 }, () => [pick(tagPool), pick(images)] as const);
        what = `burst ${targets.map(([t]) => t).join(',')}`;
        await Promise.all(targets.map(async ([tag, digest], i) => {
          const replica = i % 2 === 0 ? a : b;
          const manifest = await replica.manifests.get(NAME, { kind: 'digest', digest: parseDigest(digest) });
          if (manifest) await replica.manifests.put(NAME, { kind: 'tag', tag }, manifest.content, manifest.mediaType);
        }));
      } else if (roll < 0.6 && tags.length > 0) {
        const tag = pick(tags);
        what = `delete tag ${tag}`;
        await via.manifests.delete(NAME, { kind: 'tag', tag });
      } else if (roll < 0.68) {
        const digest = pick(images);
        what = `delete manifest ${digest.slice(7, 15)}`;
        // Children of a stored index stay: a registry may refuse to delete them, and the test keeps them.
        if (!indexChildren.has(digest)) {
          await via.manifests.delete(NAME, { kind: 'digest', digest: parseDigest(digest) });
          images.splice(images.indexOf(digest), 1);
        }
      } else if (roll < 0.78) {
        const children = [pick(images), pick(images), pick(images)];
        const alive = [];
        for (const digest of children) {
          const m = await via.manifests.get(NAME, { kind: 'digest', digest: parseDigest(digest) });
          if (m) alive.push({ mediaType: m.mediaType, digest, size: m.content.length, platform: { os: 'linux', architecture: 'amd64' } });
        }
        const tag = pick(tagPool);
        what = `index ${tag} of ${alive.length}`;
        if (alive.length > 0) {
          for (const c of alive) indexChildren.add(c.digest);
          await putManifest(via, NAME, tag, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: alive }, OCI_INDEX);
        }
      } else if (roll < 0.9) {
        const subject = pick(images);
        const m = await via.manifests.get(NAME, { kind: 'digest', digest: parseDigest(subject) });
        what = `referrer of ${subject.slice(7, 15)}`;
        if (m) {
          const empty = await putBlob(via, NAME, '{}');
          await putManifest(via, NAME, undefined, {
            schemaVersion: 2,
            mediaType: OCI_MANIFEST,
            artifactType: `application/vnd.test.sig${step % 3}`,
            config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty },
            layers: [],
            subject: { mediaType: m.mediaType, digest: subject, size: m.content.length },
          }, OCI_MANIFEST);
        }
      } else {
        what = 'settings';
        await via.repositories.update(NAME, { description: `step ${step}`, visibility: next() < 0.5 ? 'public' : 'private' });
      }
      await expectConsistent(via, `step ${step} (${what}) on the replica that wrote`);
      await expectConsistent(via === a ? b : a, `step ${step} (${what}) on the other replica`);
    }
    const restarted = filesystemStorage(dir);
    await expectConsistent(restarted, 'after a restart');
    expect((await restarted.search.entry(NAME))?.tagCount).to.be.greaterThan(0);
    // A first start without a snapshot reads each summary from the first line of its document.
    await restarted.search.settled();
    rmSync(join(dir, layout.searchSnapshot), { force: true });
    const unsnapshotted = filesystemStorage(dir);
    await expectConsistent(unsnapshotted, 'after a first start without a snapshot');
    // The snapshot that load writes is written in the background: done before the folder is removed.
    await unsnapshotted.search.settled();
  });
  const indexChildren = new Set<string>();

  it('updates a tag without reading the other tags: reads per tag PUT do not grow with the repository', async () => {
    const driver = new CountingDriver(dir);
    const storage = createStorage(driver);
    const image = await pushImage(storage, NAME, 'base', PLATFORMS[0]!, 'one');
    const manifest = (await storage.manifests.get(NAME, { kind: 'digest', digest: parseDigest(image.digest) }))!;
    const readsOf = async (tag: string) => {
      const [gets, lists] = [driver.gets, driver.lists];
      await storage.manifests.put(NAME, { kind: 'tag', tag }, manifest.content, manifest.mediaType);
      return { gets: driver.gets - gets, lists: driver.lists - lists };
    };
    const early = await readsOf('tag-0001');
    for (let i = 2; i <= 300; i++) await storage.manifests.put(NAME, { kind: 'tag', tag: `tag-${String(i).padStart(4, '0')}` }, manifest.content, manifest.mediaType);
    const late = await readsOf('tag-0301');
    expect(late.gets).to.be.at.most(early.gets);
    expect(late.lists).to.be.at.most(early.lists);
    const entry = (await storage.search.entry(NAME))!;
    expect(entry.tagCount).to.equal(302);
    expect(entry.newestTags).to.have.length(NEWEST_TAGS);
    // The summary is bounded whatever the tag count.
    expect(JSON.stringify(entry).length).to.be.below(20_000);

    // A manifest delete finds its tags through markers: it reads the 302 links it removes, not more.
    const [gets, lists] = [driver.gets, driver.lists];
    const other = await pushImage(storage, NAME, 'lonely', PLATFORMS[1]!, 'two');
    const before = driver.gets;
    await storage.manifests.delete(NAME, { kind: 'digest', digest: parseDigest(other.digest) });
    expect(driver.gets - before).to.be.below(40);
    expect(driver.lists - lists).to.be.below(20);
    expect(gets).to.be.greaterThan(0);
    expect(await storage.manifests.tags(NAME)).to.not.include('lonely');
    expect((await storage.search.entry(NAME))!.tagCount).to.equal(302);
  });

  it('catches another replica up by the journal: a change elsewhere costs it that summary, not every one', async () => {
    const a = await replica();
    const coordination = await createRedisCoordination({ url: redis.url, keyPrefix: `berth-test-${dir}:` });
    coordinations.push(coordination);
    const driver = new CountingDriver(dir);
    const b = createStorage(driver, undefined, coordination);
    for (let i = 0; i < 60; i++) await pushImage(a, `team/app-${i}`, 'v1', PLATFORMS[i % 4]!, `r${i}`);
    expect(await b.search.search({})).to.have.length(60);
    await a.repositories.update('team/app-7', { description: 'changed on a' });
    const before = driver.gets;
    const found = await b.search.search({ q: 'changed' });
    expect(found.map((e) => e.name)).to.deep.equal(['team/app-7']);
    // One journal per process that wrote (a's), and the one summary it names.
    expect(driver.gets - before).to.be.at.most(3);
  });

  it('starts from a snapshot and the journals: a restart reads a few documents, not one per repository', async () => {
    const first = filesystemStorage(dir);
    for (let i = 0; i < 40; i++) await pushImage(first, `team/app-${i}`, 'v1', PLATFORMS[i % 4]!, `s${i}`);
    const reader = filesystemStorage(dir);
    expect(await reader.search.search({})).to.have.length(40);
    await reader.search.settled();
    // Changed after the snapshot, by a process the next one never met: found through its journal.
    await first.repositories.update('team/app-3', { description: 'after the snapshot' });
    const driver = new CountingDriver(dir);
    const restarted = createStorage(driver);
    const found = await restarted.search.search({});
    expect(found).to.have.length(40);
    expect(found.find((e) => e.name === 'team/app-3')?.description).to.equal('after the snapshot');
    // The snapshot, the journals (one per process that wrote) and the one summary changed since.
    expect(driver.gets).to.be.at.most(5);
  });

  it('trusts a snapshot five days old (the journals outlive it), and reads everything again after a week', async () => {
    const first = filesystemStorage(dir);
    for (let i = 0; i < 30; i++) await pushImage(first, `team/app-${i}`, 'v1', PLATFORMS[i % 4]!, `o${i}`);
    expect(await first.search.search({})).to.have.length(30);
    await first.search.settled();
    const snapshotFile = join(dir, layout.searchSnapshot);
    const aged = (days: number) => {
      const snapshot = JSON.parse(readFileSync(snapshotFile, 'utf8')) as { savedAt: number };
      writeFileSync(snapshotFile, JSON.stringify({ ...snapshot, savedAt: Date.now() - days * 86_400_000 }));
    };
    aged(5);
    const recent = new CountingDriver(dir);
    expect(await createStorage(recent).search.search({})).to.have.length(30);
    expect(recent.gets, 'the snapshot and the journals').to.be.at.most(4);
    aged(8);
    const stale = new CountingDriver(dir);
    const staleStorage = createStorage(stale);
    expect(await staleStorage.search.search({})).to.have.length(30);
    await staleStorage.search.settled();
    expect(stale.gets, 'every summary again').to.be.at.least(30);
  });

  it('a first start without a snapshot takes each summary from its document\'s first line; an entry alone (the older shape) is summarised, a torn document left out', async () => {
    const first = filesystemStorage(dir);
    for (let i = 0; i < 12; i++) await pushImage(first, `team/app-${i}`, 'v1', PLATFORMS[i % 4]!, `h${i}`);
    const entries = await Promise.all(Array.from({ length: 12 }, async (_, i) => (await first.search.entry(`team/app-${i}`))!));
    const documentOf = (i: number) => join(dir, layout.searchEntry(`team/app-${i}`));
    const firstLine = (i: number) => readFileSync(documentOf(i), 'utf8').split('\n')[0]!;
    expect(JSON.parse(firstLine(0))[1]).to.deep.equal(JSON.parse(JSON.stringify(summaryOf(entries[0]!))));
    // The first line is what a first start reads: one that says otherwise than its entry shows through.
    const withFirstLine = (i: number, version: number, description: string) => {
      const [, summary] = JSON.parse(firstLine(i)) as [number, object];
      writeFileSync(documentOf(i), JSON.stringify([version, { ...summary, description }]) + readFileSync(documentOf(i), 'utf8').slice(firstLine(i).length));
    };
    withFirstLine(1, 2, 'from the first line');
    writeFileSync(documentOf(2), JSON.stringify(entries[2]));
    writeFileSync(documentOf(3), readFileSync(documentOf(3)).subarray(0, 300));
    writeFileSync(documentOf(4), readFileSync(documentOf(4), 'utf8').slice(0, -20));
    // A first line of another version is not trusted: the entry below it is summarised instead.
    withFirstLine(5, 999, 'from an unknown version');
    rmSync(join(dir, layout.searchSnapshot), { force: true });
    const started = filesystemStorage(dir);
    const found = new Map((await started.search.search({})).map((e) => [e.name, e]));
    await started.search.settled();
    expect([...found.keys()].sort()).to.deep.equal(entries.map((e) => e.name).filter((n) => n !== 'team/app-3' && n !== 'team/app-4').sort());
    expect(found.get('team/app-1')!.description).to.equal('from the first line');
    expect(JSON.parse(JSON.stringify(found.get('team/app-2')))).to.deep.equal(JSON.parse(JSON.stringify(summaryOf(entries[2]!))));
    expect(found.get('team/app-5')!.description).to.equal(entries[5]!.description);
    for (const i of [0, 6, 11]) expect(JSON.parse(JSON.stringify(found.get(`team/app-${i}`)))).to.deep.equal(JSON.parse(JSON.stringify(summaryOf(entries[i]!))));
  });

  it('renews a day-old snapshot in a process that holds the summaries, so that a quiet registry still restarts from it', async () => {
    const first = filesystemStorage(dir);
    for (let i = 0; i < 30; i++) await pushImage(first, `team/app-${i}`, 'v1', PLATFORMS[i % 4]!, `r${i}`);
    const running = filesystemStorage(dir);
    expect(await running.search.search({})).to.have.length(30);
    await running.search.settled();
    const snapshotFile = join(dir, layout.searchSnapshot);
    const savedAt = () => (JSON.parse(readFileSync(snapshotFile, 'utf8')) as { savedAt: number }).savedAt;
    const saved = savedAt();
    // Not yet a day old: left as it is.
    await running.search.renewSnapshot();
    expect(savedAt()).to.equal(saved);
    // Quiet for a week: without the renewal, the next start would read every summary (see above).
    writeFileSync(snapshotFile, JSON.stringify({ ...JSON.parse(readFileSync(snapshotFile, 'utf8')), savedAt: Date.now() - 8 * 86_400_000 }));
    await running.search.renewSnapshot(0);
    expect(savedAt()).to.be.at.least(saved);
    const next = new CountingDriver(dir);
    const nextStorage = createStorage(next);
    expect(await nextStorage.search.search({})).to.have.length(30);
    await nextStorage.search.settled();
    expect(next.gets, 'the snapshot and the journals').to.be.at.most(4);
  });

  it('pages tags newest first with a name prefix', async () => {
    const storage = filesystemStorage(dir);
    const image = await pushImage(storage, NAME, 'v1.0', PLATFORMS[0]!, 'p');
    const manifest = (await storage.manifests.get(NAME, { kind: 'digest', digest: parseDigest(image.digest) }))!;
    for (const tag of ['v1.1', 'v2.0', 'latest', 'v2.1']) await storage.manifests.put(NAME, { kind: 'tag', tag }, manifest.content, manifest.mediaType);
    const all = await storage.search.tagPage(NAME, { offset: 0, n: 100 });
    const order = [...all.tags].sort((x, y) => y.pushedAt.localeCompare(x.pushedAt) || x.tag.localeCompare(y.tag)).map((t) => t.tag);
    expect(all.tags.map((t) => t.tag)).to.deep.equal(order);
    const v2 = await storage.search.tagPage(NAME, { offset: 0, n: 1, prefix: 'v2.' });
    expect(v2.total).to.equal(2);
    expect(v2.tags).to.have.length(1);
    expect(v2.tags[0]!.tag).to.match(/^v2\./);
    const second = await storage.search.tagPage(NAME, { offset: 1, n: 1, prefix: 'v2.' });
    expect(second.tags[0]!.tag).to.match(/^v2\./).and.not.equal(v2.tags[0]!.tag);
  });

  it('reads each distinct manifest of a nested index once, and keeps its platforms capped', async () => {
    const driver = new CountingDriver(dir);
    const storage = createStorage(driver);
    // 100 distinct images, an index of them, and an index naming that index 1,000 times.
    const children = [];
    for (let i = 0; i < 100; i++) {
      const image = await pushImage(storage, NAME, undefined, { os: 'linux', architecture: i % 2 ? 'amd64' : 'arm64' }, `c${i}`);
      children.push({ mediaType: OCI_MANIFEST, digest: image.digest, size: image.size, platform: { os: 'linux', architecture: i % 2 ? 'amd64' : 'arm64' } });
    }
    const inner = await putManifest(storage, NAME, undefined, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: children }, OCI_INDEX);
    const outerEntries = Array.from({ length: 1000 }, () => ({ mediaType: OCI_INDEX, digest: inner.digest, size: inner.size }));
    const before = driver.gets;
    await putManifest(storage, NAME, 'nested', { schemaVersion: 2, mediaType: OCI_INDEX, manifests: outerEntries }, OCI_INDEX);
    const reads = driver.gets - before;
    // Each distinct manifest (≤ MAX_PLATFORMS images read before the cap, the inner index, the outer)
    // costs a few reads (revision facts, bytes, config); 1,000 copies of the inner index add nothing.
    expect(reads).to.be.below(4 * (MAX_PLATFORMS + 2) + 40);
    const entry = (await storage.search.entry(NAME))!;
    const tag = entry.newestTags.find((t) => t.tag === 'nested')!;
    expect(tag.platforms.length).to.equal(MAX_PLATFORMS);
    expect(new Set(tag.platforms.map((p) => p.digest)).size).to.equal(MAX_PLATFORMS);
    expect(entry.architectures).to.deep.equal(['amd64', 'arm64']);
    expect(JSON.stringify(entry).length).to.be.below(64 * 1024);
  });
});
