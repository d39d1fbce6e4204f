// The search index over real filesystem storage: push, retag, delete and settings keep each repository's
// entry right (platforms from configs and from the children of an index), and search filters by it.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filesystemStorage, parseDigest, type Storage } from '../../storage/index.ts';
import { digestOf, OCI_INDEX, OCI_MANIFEST, pushImage, putBlob } from '../helpers/storage-images.ts';

describe('unit: the search index', () => {
  let dir: string;
  let storage: Storage;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-search-'));
    storage = filesystemStorage(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('records os, architecture, os.version and size of an image on push', async () => {
    await pushImage(storage, 'acme/win', 'ltsc2019', { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.5329' });
    const entry = await storage.search.entry('acme/win');
    expect(entry?.os).to.deep.equal(['windows']);
    expect(entry?.architectures).to.deep.equal(['amd64']);
    const tag = entry!.newestTags[0]!;
    expect(tag.tag).to.equal('ltsc2019');
    expect(tag.platforms[0]).to.include({ os: 'windows', architecture: 'amd64', osVersion: '10.0.17763.5329' });
    expect(tag.size).to.be.greaterThan(0);
    expect(Date.parse(tag.pushedAt)).to.be.closeTo(Date.now(), 60_000);
  });

  it('reads every child of an index, variants included', async () => {
    const amd = await pushImage(storage, 'acme/multi', undefined, { os: 'linux', architecture: 'amd64' });
    const arm = await pushImage(storage, 'acme/multi', undefined, { os: 'linux', architecture: 'arm', variant: 'v7' });
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          { ...amd, mediaType: OCI_MANIFEST, platform: { os: 'linux', architecture: 'amd64' } },
          { ...arm, mediaType: OCI_MANIFEST, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
        ],
      }),
    );
    await storage.manifests.put('acme/multi', { kind: 'tag', tag: 'latest' }, index, OCI_INDEX);
    const entry = await storage.search.entry('acme/multi');
    expect(entry?.architectures).to.deep.equal(['amd64', 'arm/v7']);
    expect(entry!.newestTags[0]!.platforms.map((p) => p.digest)).to.deep.equal([amd.digest, arm.digest]);
    expect(entry!.newestTags[0]!.size).to.equal(entry!.newestTags[0]!.platforms[0]!.size + entry!.newestTags[0]!.platforms[1]!.size);
  });

  it('keeps tags right through retag and delete, and forgets a repository whose last manifest goes', async () => {
    const image = await pushImage(storage, 'acme/app', 'v1', { os: 'linux', architecture: 'amd64' });
    const bytes = (await storage.manifests.get('acme/app', { kind: 'tag', tag: 'v1' }))!.content;
    await storage.manifests.put('acme/app', { kind: 'tag', tag: 'stable' }, bytes, OCI_MANIFEST);
    expect((await storage.search.entry('acme/app'))!.newestTags.map((t) => t.tag).sort()).to.deep.equal(['stable', 'v1']);

    await storage.manifests.delete('acme/app', { kind: 'tag', tag: 'v1' });
    expect((await storage.search.entry('acme/app'))!.newestTags.map((t) => t.tag)).to.deep.equal(['stable']);

    await storage.manifests.delete('acme/app', { kind: 'digest', digest: parseDigest(image.digest) });
    expect(await storage.search.entry('acme/app')).to.equal(undefined);
    expect(await storage.search.search({})).to.deep.equal([]);
  });

  it('lists the referrers of a tag by artifact type, and leaves an artifact without a platform out of OS and architecture', async () => {
    const image = await pushImage(storage, 'acme/signed', 'v1', { os: 'linux', architecture: 'amd64' });
    const empty = await putBlob(storage, 'acme/signed', '{}');
    const signature = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty },
        layers: [],
        subject: { ...image, mediaType: OCI_MANIFEST },
      }),
    );
    await storage.manifests.put('acme/signed', { kind: 'tag', tag: 'sig' }, signature, OCI_MANIFEST);
    const entry = (await storage.search.entry('acme/signed'))!;
    const v1 = entry.newestTags.find((t) => t.tag === 'v1')!;
    expect(v1.referrers).to.deep.equal([{ artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json', digest: digestOf(signature) }]);
    expect(entry.newestTags.find((t) => t.tag === 'sig')!.platforms).to.deep.equal([]);
    expect(entry.os).to.deep.equal(['linux']);
  });

  it('searches names and descriptions, filters by OS, architecture and official, and sorts', async () => {
    await pushImage(storage, 'library/busybox', 'latest', { os: 'linux', architecture: 'arm64' });
    await pushImage(storage, 'acme/win', 'ltsc2022', { os: 'windows', architecture: 'amd64', 'os.version': '10.0.20348.1' });
    await pushImage(storage, 'acme/tool', 'latest', { os: 'linux', architecture: 'amd64' });
    await storage.repositories.update('acme/tool', { description: 'A handy Swiss army knife' });

    const names = async (query: Parameters<Storage['search']['search']>[0]) => (await storage.search.search(query)).map((e) => e.name);
    expect(await names({ q: 'swiss knife' })).to.deep.equal(['acme/tool']);
    expect(await names({ os: 'windows' })).to.deep.equal(['acme/win']);
    expect(await names({ os: 'linux' })).to.deep.equal(['acme/tool', 'library/busybox']);
    expect(await names({ architecture: 'arm64' })).to.deep.equal(['library/busybox']);
    expect(await names({ official: true })).to.deep.equal(['library/busybox']);
    await pushImage(storage, 'library/busybox', 'newer', { os: 'linux', architecture: 'arm64' }, 'newer layer');
    expect(await names({ sort: 'pushed' })).to.deep.equal(['library/busybox', 'acme/tool', 'acme/win']);
    expect(await names({ visible: (e) => e.name !== 'acme/win' })).to.deep.equal(['acme/tool', 'library/busybox']);

    storage.search.countPull('acme/win');
    storage.search.countPull('acme/win');
    await storage.search.flushPulls();
    expect((await storage.search.entry('acme/win'))!.pulls).to.equal(2);
    expect((await names({ sort: 'pulls' }))[0]).to.equal('acme/win');
  });

  it('is shared through storage: another process on the same data finds what this one indexed', async () => {
    await pushImage(storage, 'acme/shared', 'v1', { os: 'linux', architecture: 'amd64' });
    const other = filesystemStorage(dir);
    expect((await other.search.entry('acme/shared'))?.os).to.deep.equal(['linux']);
  });
});
