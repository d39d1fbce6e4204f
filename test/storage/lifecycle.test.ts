// The storage lifecycle (garbage collection, expiring uploads, retention, policies) on each real driver:
// the filesystem and S3 (s3rver). Pushes go through the same stores the server uses.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  applyRetention,
  createStorage,
  FilesystemDriver,
  isStorageError,
  localCoordination,
  parseDigest,
  PolicyError,
  type Coordination,
  type Digest,
  type Storage,
  type StorageDriver,
} from '../../storage/index.ts';
import { S3Driver } from '../../storage/driver/s3/index.ts';
import { storedBlobs } from '../../storage/walk.ts';
import { sharedS3 } from '../helpers/s3.ts';
import { waitFor } from '../helpers/wait.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const MiB = 1024 * 1024;

interface DriverUnderTest {
  driver: StorageDriver;
  /** Storage paths with a multipart upload begun and neither completed nor aborted (S3 only). */
  pendingUploads?(): Promise<string[]>;
  cleanup(): Promise<void>;
}

function digestOf(content: Buffer | string): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(content).digest('hex')}`);
}

async function pushBlob(storage: Storage, name: string, content: Buffer | string): Promise<string> {
  const digest = digestOf(content);
  const upload = await storage.uploads.create(name);
  const written = await storage.uploads.append(upload, Readable.from([Buffer.from(content)]));
  await storage.uploads.complete(written, digest);
  return digest.value;
}

interface Pushed {
  digest: string;
  config: string;
  layers: string[];
  bytes: Buffer;
}

function imageManifest(config: string, configSize: number, layers: Array<{ digest: string; size: number }>, extra: object = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: configSize },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
      ...extra,
    }),
  );
}

/**
 * Pushes a config, layers and a manifest. With `skipPresent`, layers the repository serves already are
 * not uploaded again (as clients do after a HEAD).
 */
async function pushImage(
  storage: Storage,
  name: string,
  tag: string | undefined,
  layerContents: string[],
  extra: object = {},
  skipPresent = false,
): Promise<Pushed> {
  const configBytes = JSON.stringify({ architecture: 'amd64', os: 'linux', tag, name, layerContents });
  const config = await pushBlob(storage, name, configBytes);
  const layers: string[] = [];
  for (const content of layerContents) {
    const digest = digestOf(content);
    const present = skipPresent && (await storage.blobs.sizeIn(name, digest)) !== undefined;
    layers.push(present ? digest.value : await pushBlob(storage, name, content));
  }
  const bytes = imageManifest(config, Buffer.byteLength(configBytes), layerContents.map((c, i) => ({ digest: layers[i]!, size: Buffer.byteLength(c) })), extra);
  const digest = digestOf(bytes);
  await storage.manifests.put(name, tag ? { kind: 'tag', tag } : { kind: 'digest', digest }, bytes, OCI_MANIFEST);
  return { digest: digest.value, config, layers, bytes };
}

async function blobsIn(driver: StorageDriver): Promise<string[]> {
  return (await storedBlobs(driver)).map((d) => d.value).sort();
}

/** Every path in storage with its size: a snapshot to compare. */
async function snapshot(driver: StorageDriver, dir = '/'): Promise<string[]> {
  const out: string[] = [];
  for (const child of await driver.list(dir)) {
    const below = await snapshot(driver, child);
    if (below.length > 0) out.push(...below);
    else out.push(`${child} ${(await driver.stat(child))?.size ?? '-'}`);
  }
  return out;
}

/** A time after everything stored so far: what a later run of a job sees. */
const later = () => new Date(Date.now() + 60_000);

function describeLifecycle(driverName: string, make: () => Promise<DriverUnderTest>): void {
  describe(`storage lifecycle on ${driverName}`, function () {
    this.timeout(120_000);
    let subject: DriverUnderTest;
    let coordination: Coordination;
    let storage: Storage;
    const fresh = async () => {
      await subject?.cleanup();
      subject = await make();
      coordination = localCoordination();
      storage = createStorage(subject.driver, undefined, coordination);
    };
    after(() => subject?.cleanup());

    describe('garbage collection', () => {
      beforeEach(fresh);

      it('frees exactly the unreachable blobs, reports them and the bytes, and keeps every tagged image whole', async () => {
        const kept = await pushImage(storage, 'team/app', 'v1', ['shared layer', 'layer only app has']);
        const gone = await pushImage(storage, 'team/app', 'v2', ['shared layer', 'layer only v2 had, longer']);
        const other = await pushImage(storage, 'other/tool', 'latest', ['tool layer']);
        const orphan = await pushBlob(storage, 'team/app', 'a blob no manifest names');
        await storage.manifests.delete('team/app', { kind: 'digest', digest: parseDigest(gone.digest) });
        const before = await blobsIn(subject.driver);

        const report = await storage.gc.run({ graceSeconds: 0, now: later(), clockSlackMs: 0 });

        const unreachable = [gone.digest, gone.config, gone.layers[1]!, orphan].sort();
        const after = await blobsIn(subject.driver);
        expect(after).to.deep.equal(before.filter((d) => !unreachable.includes(d)));
        expect(report.blobsRemoved.map((b) => b.digest).sort()).to.deep.equal(unreachable);
        const sizes = [gone.bytes.length, (await sizeOfConfig(gone)), Buffer.byteLength('layer only v2 had, longer'), Buffer.byteLength('a blob no manifest names')];
        expect(report.bytesFreed).to.equal(sizes.reduce((a, b) => a + b, 0));
        expect(report.manifestsRemoved).to.deep.equal([]);
        // The links to removed blobs went with them: the repository no longer serves them.
        expect(await storage.blobs.sizeIn('team/app', parseDigest(orphan))).to.equal(undefined);
        for (const [name, image] of [['team/app', kept], ['other/tool', other]] as const) {
          const manifest = await storage.manifests.get(name, { kind: 'tag', tag: name === 'team/app' ? 'v1' : 'latest' });
          expect(manifest?.digest).to.equal(image.digest);
          for (const blob of [image.config, ...image.layers]) expect(await storage.blobs.sizeIn(name, parseDigest(blob))).to.be.a('number');
        }
        // Nothing left to collect: a second run removes nothing.
        expect((await storage.gc.run({ graceSeconds: 0, now: later(), clockSlackMs: 0 })).blobsRemoved).to.deep.equal([]);

        function sizeOfConfig(image: Pushed): number {
          return (JSON.parse(image.bytes.toString()) as { config: { size: number } }).config.size;
        }
      });

      it('counts a manifest pushed again as pushed then: its revision\'s time moves, its facts stay', async () => {
        const first = await pushImage(storage, 'again/app', undefined, ['a layer pushed twice']);
        const revision = `/repositories/again/app/_manifests/revisions/sha256/${first.digest.slice(7)}/meta`;
        const before = await subject.driver.stat(revision);
        const facts = (await subject.driver.getContent(revision))!.toString();
        // S3 keeps times to the second: the second push must come in a later one.
        await waitFor(() => Date.now() >= before!.modifiedAt.getTime() + 1000 || undefined, 'the clock to pass the first push by a second');
        await storage.manifests.put('again/app', { kind: 'tag', tag: 'second' }, first.bytes, OCI_MANIFEST);
        await storage.manifests.delete('again/app', { kind: 'tag', tag: 'second' });
        const after = await subject.driver.stat(revision);
        expect(after!.modifiedAt.getTime()).to.be.above(before!.modifiedAt.getTime());
        expect((await subject.driver.getContent(revision))!.toString()).to.equal(facts);
        // Untagged and older than the first push's grace, but not than the second's: kept.
        const report = await storage.gc.run({ deleteUntagged: true, graceSeconds: 0, clockSlackMs: 0, now: new Date(after!.modifiedAt.getTime() - 1) });
        expect(report.manifestsRemoved).to.deep.equal([]);
        expect((await storage.gc.run({ deleteUntagged: true, graceSeconds: 0, clockSlackMs: 0, now: later() })).manifestsRemoved).to.deep.equal([{ repository: 'again/app', digest: first.digest }]);
      });

      it('a dry run changes nothing in storage and reports what a real run then removes', async () => {
        await pushImage(storage, 'dry/app', 'v1', ['kept layer']);
        const gone = await pushImage(storage, 'dry/app', 'v2', ['dropped layer']);
        await storage.manifests.delete('dry/app', { kind: 'digest', digest: parseDigest(gone.digest) });
        const before = await snapshot(subject.driver);

        const dry = await storage.gc.run({ dryRun: true, graceSeconds: 0, now: later(), clockSlackMs: 0 });
        expect(await snapshot(subject.driver)).to.deep.equal(before);
        expect(dry.dryRun).to.equal(true);
        expect(dry.blobsRemoved.map((b) => b.digest).sort()).to.deep.equal([gone.digest, gone.config, gone.layers[0]!].sort());

        const real = await storage.gc.run({ graceSeconds: 0, now: later(), clockSlackMs: 0 });
        expect(real.blobsRemoved).to.deep.equal(dry.blobsRemoved);
        expect(real.bytesFreed).to.equal(dry.bytesFreed);
      });

      it('keeps blobs younger than the grace period', async () => {
        const gone = await pushImage(storage, 'young/app', 'v1', ['young layer']);
        await storage.manifests.delete('young/app', { kind: 'digest', digest: parseDigest(gone.digest) });
        const before = await blobsIn(subject.driver);
        const report = await storage.gc.run({ graceSeconds: 3600 });
        expect(report.blobsRemoved).to.deep.equal([]);
        expect(await blobsIn(subject.driver)).to.deep.equal(before);
      });

      it('removes untagged manifests only with deleteUntagged; index children and referrers of kept manifests stay', async () => {
        const tagged = await pushImage(storage, 'ut/app', 'v1', ['tagged layer']);
        const untagged = await pushImage(storage, 'ut/app', undefined, ['untagged layer']);
        const child = await pushImage(storage, 'ut/app', undefined, ['child layer']);
        const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: child.digest, size: child.bytes.length }] }));
        await storage.manifests.put('ut/app', { kind: 'tag', tag: 'multi' }, index, OCI_INDEX);
        const subjectOf = (image: Pushed) => ({ subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.length } });
        const signature = await pushImage(storage, 'ut/app', undefined, ['signature of v1'], subjectOf(tagged));
        const strayReferrer = await pushImage(storage, 'ut/app', undefined, ['referrer of untagged'], subjectOf(untagged));

        const plain = await storage.gc.run({ graceSeconds: 0, now: later(), clockSlackMs: 0 });
        expect(plain.manifestsRemoved).to.deep.equal([]);
        expect(plain.blobsRemoved).to.deep.equal([]);

        const report = await storage.gc.run({ deleteUntagged: true, graceSeconds: 0, now: later(), clockSlackMs: 0 });
        expect(report.manifestsRemoved.map((m) => m.digest).sort()).to.deep.equal([untagged.digest, strayReferrer.digest].sort());
        const expectedBlobs = [untagged, strayReferrer].flatMap((i) => [i.digest, i.config, ...i.layers]).sort();
        expect(report.blobsRemoved.map((b) => b.digest).sort()).to.deep.equal(expectedBlobs);
        for (const image of [tagged, child, signature]) {
          expect(await storage.manifests.get('ut/app', { kind: 'digest', digest: parseDigest(image.digest) }), image.digest).to.not.equal(undefined);
          for (const blob of [image.config, ...image.layers]) expect(await storage.blobs.sizeIn('ut/app', parseDigest(blob))).to.be.a('number');
        }
        expect(await storage.manifests.get('ut/app', { kind: 'digest', digest: parseDigest(untagged.digest) })).to.equal(undefined);
        expect((await storage.manifests.referrers('ut/app', parseDigest(tagged.digest))).map((r) => r.digest)).to.deep.equal([signature.digest]);
      });

      it('races 20 concurrent pushes that reuse old unreferenced layers: every pushed image is whole afterwards', async () => {
        // Old layers that nothing references any more: each a candidate once it is older than the run's slack.
        const oldLayers = Array.from({ length: 6 }, (_, i) => `old layer ${i} ${'x'.repeat(1000 * i)}`);
        const seed = await pushImage(storage, 'race/seed', 'seed', oldLayers);
        await storage.manifests.delete('race/seed', { kind: 'digest', digest: parseDigest(seed.digest) });
        const newest = await subject.driver.stat(`/repositories/race/seed/_layers/sha256/${seed.layers[5]!.slice(7)}`);
        await waitFor(() => Date.now() - newest!.modifiedAt.getTime() > 2500, 'the old layers to be older than the slack', 10_000);

        // A quarter of the pushes go to the repository that holds the old links, and skip the layers it has.
        const raceRepo = (i: number) => (i % 4 === 0 ? 'race/seed' : `race/app${i % 4}`);
        // A second set of stores over the same storage and coordination: another process pushing.
        const pusher = createStorage(subject.driver, undefined, coordination);
        let pushing = true;
        const runs: number[] = [];
        const collector = (async () => {
          while (pushing) runs.push((await storage.gc.run({ graceSeconds: 0 })).blobsRemoved.length);
        })();
        const pushes = await Promise.all(
          Array.from({ length: 20 }, async (_, i) => {
            const layers = [oldLayers[i % 6]!, oldLayers[(i + 1) % 6]!, oldLayers[(i + 3) % 6]!, `new layer of push ${i}`];
            // A refused manifest (a layer went between the upload and the PUT) is pushed again, as clients do.
            for (let attempt = 1; ; attempt++) {
              try {
                return await pushImage(pusher, raceRepo(i), `t${i}`, layers, {}, true);
              } catch (err) {
                if (attempt >= 5 || !isStorageError(err, 'ManifestBlobUnknown')) throw err;
              }
            }
          }),
        );
        pushing = false;
        await collector;
        runs.push((await storage.gc.run({ graceSeconds: 0 })).blobsRemoved.length);
        expect(runs.length).to.be.greaterThan(1);

        for (const [i, image] of pushes.entries()) {
          const name = raceRepo(i);
          for (const reader of [pusher, storage, createStorage(subject.driver)]) {
            const manifest = await reader.manifests.get(name, { kind: 'tag', tag: `t${i}` });
            expect(manifest?.digest, `${name}:t${i}`).to.equal(image.digest);
            for (const blob of [image.config, ...image.layers]) {
              const digest = parseDigest(blob);
              expect(await reader.blobs.sizeIn(name, digest), `${blob} in ${name}`).to.be.a('number');
              const chunks: Buffer[] = [];
              for await (const chunk of await reader.blobs.open(digest)) chunks.push(chunk as Buffer);
              expect(digestOf(Buffer.concat(chunks)).value).to.equal(blob);
            }
          }
        }
      });
    });

    describe('expiring uploads', () => {
      before(fresh);

      it('removes sessions started before the expiry with their data (S3: the multipart upload is aborted); live ones stay', async () => {
        const abandoned = await storage.uploads.create('exp/app');
        await storage.uploads.append(abandoned, Readable.from([randomBytes(6 * MiB)]));
        await waitFor(() => Date.now() > abandoned.startedAt.getTime() + 1, 'the clock to move');
        const live = await storage.uploads.create('exp/app');
        await storage.uploads.append(live, Readable.from([randomBytes(6 * MiB)]));
        const pendingBefore = (await subject.pendingUploads?.()) ?? [];

        expect(await storage.uploads.purgeExpired(live.startedAt)).to.equal(1);

        expect(await storage.uploads.get('exp/app', abandoned.id)).to.equal(undefined);
        expect(await subject.driver.list(`/repositories/exp/app/_uploads`)).to.deep.equal([`/repositories/exp/app/_uploads/${live.id}`]);
        expect(await subject.driver.list('/uploads')).to.deep.equal([`/uploads/${live.id}`]);
        expect((await storage.uploads.get('exp/app', live.id))?.offset).to.equal(6 * MiB);
        if (subject.pendingUploads) {
          expect(pendingBefore.filter((p) => p.includes(abandoned.id))).to.have.length(1);
          const pending = await subject.pendingUploads();
          expect(pending.filter((p) => p.includes(abandoned.id))).to.deep.equal([]);
          expect(pending.filter((p) => p.includes(live.id))).to.have.length(1);
        }
      });
    });

    describe('retention and policies', () => {
      before(fresh);

      it('keeps exactly the last N tags, the matching ones and the immutable ones; a dry run deletes nothing', async () => {
        for (const tag of ['a1', 'a2', 'release-1', 'v1.0', 'a3', 'a4']) await pushImage(storage, 'ret/app', tag, [`layer ${tag}`]);
        // On S3 the tag files' times can share a second: which two a* tags are the last two is not asserted.
        await storage.policies.set('ret', { immutableTags: ['v*'], retention: { keepLast: 2, keepTags: ['release-*'] } });
        await storage.policies.set('ret/other', { retention: { keepTags: ['keep'] } });
        await pushImage(storage, 'ret/other', 'keep', ['k']);
        await pushImage(storage, 'ret/other', 'drop', ['d']);
        await pushImage(storage, 'free/app', 'x', ['no policy here']);
        const tagsBefore = await storage.manifests.tags('ret/app');

        const dry = await applyRetention(subject.driver, storage.manifests, storage.policies, { dryRun: true });
        expect(await storage.manifests.tags('ret/app')).to.deep.equal(tagsBefore);
        const run = await applyRetention(subject.driver, storage.manifests, storage.policies);
        expect(run).to.deep.equal(dry);

        const app = run.find((r) => r.repository === 'ret/app')!;
        expect(app.kept).to.include.members(['release-1', 'v1.0']);
        expect(app.kept).to.have.length(4);
        expect([...app.kept, ...app.deleted].sort()).to.deep.equal(tagsBefore.sort());
        expect((await storage.manifests.tags('ret/app')).sort()).to.deep.equal([...app.kept].sort());
        expect(run.find((r) => r.repository === 'ret/other')).to.deep.equal({ repository: 'ret/other', kept: ['keep'], deleted: ['drop'] });
        expect(run.find((r) => r.repository === 'free/app')).to.equal(undefined);
        expect(await storage.manifests.tags('free/app')).to.deep.equal(['x']);
      });

      it('keeps the tags pushed in the last D days', async () => {
        await pushImage(storage, 'days/app', 'recent', ['recent layer']);
        await storage.policies.set('days/app', { retention: { keepDays: 7 } });
        const inSixDays = new Date(Date.now() + 6 * 86_400_000);
        expect((await applyRetention(subject.driver, storage.manifests, storage.policies, { dryRun: true, now: inSixDays })).find((r) => r.repository === 'days/app')).to.deep.equal({ repository: 'days/app', kept: ['recent'], deleted: [] });
        const inEightDays = new Date(Date.now() + 8 * 86_400_000);
        expect((await applyRetention(subject.driver, storage.manifests, storage.policies, { now: inEightDays })).find((r) => r.repository === 'days/app')).to.deep.equal({ repository: 'days/app', kept: [], deleted: ['recent'] });
        expect(await storage.manifests.tags('days/app')).to.deep.equal([]);
      });

      it('policies are validated, stored, listed and removed; quotas only on namespaces', async () => {
        await expectPolicyError(() => storage.policies.set('Bad Name', {}), 'not a repository or namespace name');
        await expectPolicyError(() => storage.policies.set('pol/app', { quotaBytes: 10 }), 'per namespace');
        await expectPolicyError(() => storage.policies.set('pol', { immutableTags: ['a/b'] }), 'immutableTags.0');
        await expectPolicyError(() => storage.policies.set('pol', { retention: { keepLast: -1 } }), 'retention.keepLast');
        await expectPolicyError(() => storage.policies.set('pol', { unknown: 1 }), 'unknown');
        await storage.policies.set('pol', { quotaBytes: 10, immutableTags: ['v*'] });
        await storage.policies.set('pol/app', { immutableTags: ['stable'] });
        const effective = await storage.policies.forRepository('pol/app');
        expect(effective).to.deep.include({ namespace: 'pol', immutableTags: ['v*', 'stable'], quotaBytes: 10 });
        expect(await storage.policies.isImmutable('pol/app', 'v2.1')).to.equal(true);
        expect(await storage.policies.isImmutable('pol/app', 'stable')).to.equal(true);
        expect(await storage.policies.isImmutable('pol/other', 'stable')).to.equal(false);
        expect((await storage.policies.list()).map((p) => p.scope)).to.include.members(['pol', 'pol/app']);
        expect(await storage.policies.remove('pol/app')).to.equal(true);
        expect(await storage.policies.isImmutable('pol/app', 'stable')).to.equal(false);
      });
    });

    describe('links in the shape versions before 12-03 kept (a folder per tag or layer, holding its link)', () => {
      beforeEach(fresh);
      const tagPath = (name: string, tag: string) => `/repositories/${name}/_manifests/tags/${tag}`;
      /** Moves a tag's link into the older shape, as an older version wrote it. */
      const toOlderShape = async (name: string, tag: string) => {
        const digest = (await subject.driver.getContent(tagPath(name, tag)))!.toString();
        expect(await subject.driver.delete(tagPath(name, tag))).to.equal(true);
        await subject.driver.putContent(`${tagPath(name, tag)}/link`, digest);
      };

      it('a tag pushed now is one file holding its digest, and so is a layer link, with no folder of their own', async () => {
        const pushed = await pushImage(storage, 'shape/app', 'v1', ['a layer']);
        expect((await subject.driver.stat(tagPath('shape/app', 'v1')))?.isDirectory).to.equal(false);
        expect((await subject.driver.getContent(tagPath('shape/app', 'v1')))?.toString()).to.equal(pushed.digest);
        expect(await subject.driver.list(tagPath('shape/app', 'v1'))).to.deep.equal([]);
        expect(await subject.driver.list('/repositories/shape/app/_manifests/tags')).to.deep.equal([tagPath('shape/app', 'v1')]);
        const layerLink = `/repositories/shape/app/_layers/sha256/${pushed.layers[0]!.slice(7)}`;
        expect((await subject.driver.stat(layerLink))?.isDirectory).to.equal(false);
        expect((await subject.driver.getContent(layerLink))?.toString()).to.equal(pushed.layers[0]);
      });

      it('a layer link of that shape still lets the repository serve the blob, keeps it from GC, and is removed whole', async () => {
        const pushed = await pushImage(storage, 'shape/layers', 'v1', ['an older layer']);
        const layer = parseDigest(pushed.layers[0]!);
        const linkPath = `/repositories/shape/layers/_layers/sha256/${layer.hex}`;
        expect((await subject.driver.stat(linkPath))?.isDirectory).to.equal(false);
        expect(await subject.driver.delete(linkPath)).to.equal(true);
        await subject.driver.putContent(`${linkPath}/link`, layer.value);
        const upgraded = createStorage(subject.driver, undefined, localCoordination());
        expect(await upgraded.blobs.sizeIn('shape/layers', layer)).to.equal(Buffer.byteLength('an older layer'));
        expect((await upgraded.gc.run({ graceSeconds: 0, now: later(), clockSlackMs: 0 })).blobsRemoved).to.deep.equal([]);
        // Linked again (the layer pushed once more): on a filesystem in its folder, on S3 under the new key
        // beside the older one; listed once either way.
        await upgraded.blobs.link('shape/layers', layer);
        if (subject.driver instanceof FilesystemDriver) expect((await subject.driver.stat(linkPath))?.isDirectory).to.equal(true);
        expect((await subject.driver.list('/repositories/shape/layers/_layers/sha256')).filter((p) => p === linkPath)).to.have.length(1);
        // Untagged and unreferenced: GC unlinks it, folder and all, and frees the blob.
        await upgraded.manifests.delete('shape/layers', { kind: 'digest', digest: parseDigest(pushed.digest) });
        const report = await upgraded.gc.run({ graceSeconds: 0, now: later(), clockSlackMs: 0 });
        expect(report.blobsRemoved.map((b) => b.digest)).to.include(layer.value);
        expect(await subject.driver.stat(linkPath)).to.equal(undefined);
        expect(await upgraded.blobs.sizeIn('shape/layers', layer)).to.equal(undefined);
      });

      it('are resolved, listed, kept by GC, dated for retention, re-pointed in place and deleted whole', async () => {
        const old = await pushImage(storage, 'shape/app', 'old', ['old layer']);
        const current = await pushImage(storage, 'shape/app', 'new', ['new layer']);
        await toOlderShape('shape/app', 'old');
        // A store that never cached the tag, as after an upgrade.
        const upgraded = createStorage(subject.driver, undefined, localCoordination());
        expect((await upgraded.manifests.get('shape/app', { kind: 'tag', tag: 'old' }))?.digest).to.equal(old.digest);
        expect(await upgraded.manifests.tags('shape/app')).to.deep.equal(['new', 'old']);
        const kept = await upgraded.gc.run({ deleteUntagged: true, graceSeconds: 0, now: later(), clockSlackMs: 0 });
        expect(kept.manifestsRemoved).to.deep.equal([]);
        expect(kept.blobsRemoved).to.deep.equal([]);
        await upgraded.policies.set('shape/app', { retention: { keepDays: 7 } });
        const inSixDays = new Date(Date.now() + 6 * 86_400_000);
        const retained = await applyRetention(subject.driver, upgraded.manifests, upgraded.policies, { dryRun: true, now: inSixDays });
        expect(retained.find((r) => r.repository === 'shape/app')).to.deep.equal({ repository: 'shape/app', kept: ['new', 'old'], deleted: [] });
        await upgraded.policies.remove('shape/app');

        // Re-pointed: on a filesystem in its folder (a file cannot replace it); on S3 the new key wins.
        await upgraded.manifests.put('shape/app', { kind: 'tag', tag: 'old' }, current.bytes, OCI_MANIFEST);
        expect((await upgraded.manifests.get('shape/app', { kind: 'tag', tag: 'old' }))?.digest).to.equal(current.digest);
        expect((await createStorage(subject.driver, undefined, localCoordination()).manifests.get('shape/app', { kind: 'tag', tag: 'old' }))?.digest).to.equal(current.digest);
        expect(await upgraded.manifests.tags('shape/app')).to.deep.equal(['new', 'old']);
        // What the tag named before is untagged now, whatever the older link still says.
        const freed = await upgraded.gc.run({ deleteUntagged: true, graceSeconds: 0, now: later(), clockSlackMs: 0 });
        expect(freed.manifestsRemoved).to.deep.equal([{ repository: 'shape/app', digest: old.digest }]);
        expect((await upgraded.manifests.get('shape/app', { kind: 'tag', tag: 'new' }))?.digest).to.equal(current.digest);

        expect(await upgraded.manifests.delete('shape/app', { kind: 'tag', tag: 'old' })).to.equal(true);
        expect(await upgraded.manifests.get('shape/app', { kind: 'tag', tag: 'old' })).to.equal(undefined);
        expect(await subject.driver.stat(tagPath('shape/app', 'old'))).to.equal(undefined);
        expect(await subject.driver.getContent(`${tagPath('shape/app', 'old')}/link`)).to.equal(undefined);
        expect(await upgraded.manifests.tags('shape/app')).to.deep.equal(['new']);
        // Pushed again, it takes the shape of today.
        await upgraded.manifests.put('shape/app', { kind: 'tag', tag: 'old' }, current.bytes, OCI_MANIFEST);
        expect((await subject.driver.stat(tagPath('shape/app', 'old')))?.isDirectory).to.equal(false);
      });
    });
  });
}

async function expectPolicyError(fn: () => Promise<unknown>, fragment: string): Promise<void> {
  let error: unknown;
  try {
    await fn();
  } catch (err) {
    error = err;
  }
  expect(error).to.be.instanceOf(PolicyError);
  expect((error as Error).message).to.include(fragment);
}

describeLifecycle('the filesystem', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-lifecycle-'));
  return { driver: new FilesystemDriver(root), cleanup: () => rm(root, { recursive: true, force: true }) };
});

describeLifecycle('S3 (s3rver)', async () => {
  const s3 = await sharedS3();
  const options = s3.driverOptions(`lifecycle-${randomBytes(4).toString('hex')}/`);
  const driver = new S3Driver(options);
  return {
    driver,
    pendingUploads: async () => (await s3.pendingUploads(options.prefix!)).map((key) => `/${key.slice(options.prefix!.length)}`),
    cleanup: async () => {},
  };
});
