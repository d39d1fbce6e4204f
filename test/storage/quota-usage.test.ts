// The quota usage that links maintain (storage/usage.ts) against the truth: a walk of every link in the
// namespace, after each step of seeded random pushes, mounts, deletes and collections; a crash between a link
// and its count repaired by garbage collection; and quota checks whose storage work does not grow with the
// namespace (counted through a wrapper around the real filesystem driver).
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  createStorage,
  FilesystemDriver,
  isStorageError,
  localCoordination,
  parseDigest,
  type Digest,
  type Storage,
  type StorageDriver,
} from '../../storage/index.ts';
import { S3Driver } from '../../storage/driver/s3/index.ts';
import { sharedS3 } from '../helpers/s3.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function digestOf(content: Buffer | string): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(content).digest('hex')}`);
}

/** A small deterministic PRNG (mulberry32): the same seed gives the same sequence of steps. */
function prng(seed: number): { int(n: number): number; pick<T>(items: readonly T[]): T } {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { int, pick: (items) => items[int(items.length)]! };
}

const isDenied = (err: unknown) => isStorageError(err, 'QuotaExceeded');

/** An upload completed through storage's push rules (UploadStore.complete): false when the quota refused it. */
async function push(storage: Storage, name: string, content: Buffer): Promise<boolean> {
  const digest = digestOf(content);
  const upload = await storage.uploads.append(await storage.uploads.create(name), Readable.from([content]));
  try {
    await storage.uploads.complete(upload, digest);
    return true;
  } catch (err) {
    if (isDenied(err)) return false;
    throw err;
  }
}

/** A mount from `from` through storage's push rules (UploadStore.mount): false when refused or not there. */
async function mount(storage: Storage, name: string, from: string, digest: Digest): Promise<boolean> {
  try {
    return await storage.uploads.mount(name, digest, { from, mayRead: async () => true });
  } catch (err) {
    if (isDenied(err)) return false;
    throw err;
  }
}

/** Every file below a folder. */
async function filesUnder(driver: StorageDriver, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const child of await driver.list(dir)) {
    const info = await driver.stat(child);
    if (info?.isDirectory) out.push(...(await filesUnder(driver, child)));
    else out.push(child);
  }
  return out;
}

// A layer link of either shape: a file (since 12-03) or a folder holding `link` (older versions).
const LINK_RE = /^\/repositories\/(.+)\/_layers\/sha256\/([0-9a-f]{64})(\/link)?$/;

/** The truth, from a walk of every link file in the namespace: repositories per linked blob. */
async function linkedIn(driver: StorageDriver, namespace: string): Promise<Map<string, number>> {
  const refs = new Map<string, number>();
  for (const path of await filesUnder(driver, `/repositories/${namespace}`)) {
    const hex = LINK_RE.exec(path)?.[2];
    if (hex) refs.set(`sha256:${hex}`, (refs.get(`sha256:${hex}`) ?? 0) + 1);
  }
  return refs;
}

/** The maintained record as stored: the usage document and each blob's marker. */
async function record(driver: StorageDriver, namespace: string): Promise<{ usage: { bytes: number; blobs: number; complete: boolean }; refs: Map<string, number> } | undefined> {
  const raw = await driver.getContent(`/quotas/${namespace}/usage.json`);
  if (!raw) return undefined;
  const refs = new Map<string, number>();
  for (const path of await filesUnder(driver, `/quotas/${namespace}/blobs`)) {
    const marker = JSON.parse((await driver.getContent(path))!.toString()) as { refs: number };
    refs.set(`sha256:${path.slice(path.lastIndexOf('/') + 1)}`, marker.refs);
  }
  return { usage: JSON.parse(raw.toString()), refs };
}

interface DriverUnderTest {
  driver: StorageDriver;
  cleanup(): Promise<void>;
}

function describeUsage(driverName: string, make: () => Promise<DriverUnderTest>, seeds: number[], steps: number): void {
  describe(`maintained quota usage on ${driverName}`, function () {
    this.timeout(300_000);
    let subject: DriverUnderTest;
    let storage: Storage;
    beforeEach(async () => {
      subject = await make();
      storage = createStorage(subject.driver, undefined, localCoordination());
    });
    afterEach(() => subject.cleanup());

    for (const seed of seeds) {
      it(`equals a walk of the namespace after every step of a random sequence (seed ${seed}, ${steps} steps)`, async () => {
        const random = prng(seed);
        const namespace = 'prop';
        const repositories = ['prop', 'prop/a', 'prop/b', 'prop/c/d'];
        // A repository of another namespace shares blobs with this one: its links never count here.
        const outside = 'other/x';
        const pool = Array.from({ length: 10 }, (_, i) => Buffer.from(`blob ${i} ${'x'.repeat(100 * (i + 1))}`));
        const sizes = new Map(pool.map((b) => [digestOf(b).value, b.length]));
        const quota = 2000;
        const tagged: Array<{ name: string; digest: Digest }> = [];
        const counts = new Map<string, number>();

        // Data first, the quota after: the record must be right from the moment the quota is set.
        for (const content of pool.slice(0, 3)) await push(storage, random.pick(repositories), content);
        await storage.policies.set(namespace, { quotaBytes: quota });

        const truthBytes = async () => {
          const refs = await linkedIn(subject.driver, namespace);
          return { refs, bytes: [...refs.keys()].reduce((sum, d) => sum + sizes.get(d)!, 0) };
        };
        const linkedDigests = async (name: string) =>
          (await subject.driver.list(`/repositories/${name}/_layers/sha256`)).map((p) => parseDigest(`sha256:${p.slice(p.lastIndexOf('/') + 1)}`));

        type Step = () => Promise<string>;
        const pushStep: Step = async () => {
          const name = random.pick(repositories);
          const content = random.pick(pool);
          const before = await truthBytes();
          const admitted = await push(storage, name, content);
          const held = before.refs.has(digestOf(content).value);
          // The quota is enforced exactly against the truth: a blob the namespace holds always fits.
          expect(admitted, `push of ${content.length} bytes into ${name} at ${before.bytes}`).to.equal(held || before.bytes + content.length <= quota);
          return admitted ? 'push' : 'push refused';
        };
        const mountStep: Step = async () => {
          const name = random.pick(repositories);
          const from = random.pick([...repositories, outside]);
          const candidates = await linkedDigests(from);
          if (candidates.length === 0) return 'mount (nothing to mount)';
          return (await mount(storage, name, from, random.pick(candidates))) ? 'mount' : 'mount refused';
        };
        const outsideStep: Step = async () => {
          await push(storage, outside, random.pick(pool));
          return 'push outside';
        };
        const unlinkStep: Step = async () => {
          const name = random.pick(repositories);
          const linked = await linkedDigests(name);
          // Sometimes a blob the repository does not link: the delete is refused and nothing changes.
          const digest = linked.length > 0 && random.int(4) > 0 ? random.pick(linked) : digestOf(random.pick(pool));
          return (await storage.blobs.unlink(name, digest)) ? 'blob delete' : 'blob delete (not linked)';
        };
        const manifestStep: Step = async () => {
          const name = random.pick(repositories);
          const linked = await linkedDigests(name);
          if (linked.length < 2) return 'manifest (too few blobs)';
          const [config, layer] = [linked[0]!, random.pick(linked.slice(1))];
          const descriptor = (d: Digest, mediaType: string) => ({ mediaType, digest: d.value, size: sizes.get(d.value) });
          const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, 'application/vnd.oci.image.config.v1+json'), layers: [descriptor(layer, 'application/vnd.oci.image.layer.v1.tar+gzip')] }));
          // The manifest's own bytes are stored as a blob but linked nowhere: they count for nothing.
          await storage.manifests.put(name, { kind: 'tag', tag: `t${random.int(3)}` }, bytes, OCI_MANIFEST);
          tagged.push({ name, digest: digestOf(bytes) });
          return 'manifest';
        };
        const manifestDeleteStep: Step = async () => {
          if (tagged.length === 0) return 'manifest delete (none)';
          const { name, digest } = tagged.splice(random.int(tagged.length), 1)[0]!;
          await storage.manifests.delete(name, { kind: 'digest', digest });
          return 'manifest delete';
        };
        const gcStep: Step = async () => {
          const report = await storage.gc.run({ graceSeconds: 0, now: new Date(Date.now() + 60_000), clockSlackMs: 0 });
          // Nothing was lost between links and counts here, so the walk finds nothing to correct.
          expect(report.quotaUsageCorrected.filter((c) => c.was), 'corrections').to.deep.equal([]);
          return 'gc';
        };
        // The quota lifted for a while: links go on, a collection may drop the record, and the quota set
        // again must find the usage right.
        const quotaLiftedStep: Step = async () => {
          await storage.policies.remove(namespace);
          await push(storage, random.pick(repositories), random.pick(pool));
          const collected = random.int(2) === 0;
          if (collected) await storage.gc.run({ graceSeconds: 3600 });
          await storage.policies.set(namespace, { quotaBytes: quota });
          return collected ? 'quota lifted (record dropped)' : 'quota lifted';
        };
        // Admissions racing each other and deletes: each checks and links under the namespace's locks.
        const concurrentStep: Step = async () => {
          const batch = [pushStepUnchecked, pushStepUnchecked, mountStep, unlinkStep].map((s) => s());
          return `concurrent (${(await Promise.all(batch)).join(', ')})`;
        };
        async function pushStepUnchecked(): Promise<string> {
          return (await push(storage, random.pick(repositories), random.pick(pool))) ? 'push' : 'push refused';
        }
        const weighted: Array<[Step, number]> = [
          [pushStep, 6], [mountStep, 3], [outsideStep, 1], [unlinkStep, 3], [manifestStep, 2],
          [manifestDeleteStep, 2], [gcStep, 2], [quotaLiftedStep, 1], [concurrentStep, 2],
        ];
        const bag = weighted.flatMap(([step, weight]) => Array<Step>(weight).fill(step));

        for (let i = 0; i < steps; i++) {
          const what = await random.pick(bag)();
          const kind = what.replace(/ \(.*/, '');
          counts.set(kind, (counts.get(kind) ?? 0) + 1);
          const context = `after step ${i} (${what}) of seed ${seed}`;
          // What a check sees: the record, built at the first check after the quota was set. (Links made
          // while the quota was lifted may have taken the usage past it: then even nothing more is refused.)
          await storage.quotas.check(`${namespace}/a`, 0).catch((err: unknown) => {
            if (!isDenied(err)) throw err;
          });
          const truth = await truthBytes();
          const stored = await record(subject.driver, namespace);
          expect(stored?.usage, context).to.deep.equal({ bytes: truth.bytes, blobs: truth.refs.size, complete: true });
          expect(stored?.refs, context).to.deep.equal(truth.refs);
          expect(await storage.quotas.usage(namespace), context).to.deep.equal({ bytes: truth.bytes, blobs: truth.refs.size });
        }
        // The sequence did what it is for: links added, shared, refused, removed and collected.
        for (const kind of ['push', 'push refused', 'mount', 'blob delete', 'gc', 'concurrent', 'quota lifted']) {
          expect(counts.get(kind) ?? 0, `${kind} steps in ${JSON.stringify([...counts])}`).to.be.greaterThan(0);
        }
      });
    }

    it('links racing the walk that builds a record are each counted once', async () => {
      await storage.policies.set('racy', { quotaBytes: 1_000_000 });
      const contents = Array.from({ length: 8 }, (_, i) => Buffer.from(`racy blob ${i} ${'r'.repeat(50 * i)}`));
      for (const content of contents) await storage.blobs.putContent(digestOf(content), content);
      const sizes = new Map(contents.map((c) => [digestOf(c).value, c.length]));
      const random = prng(7);
      for (let round = 0; round < 10; round++) {
        // No record: links take no lock until one appears, and the check below builds one while they run.
        await storage.blobs.usage.drop('racy');
        const changes = Array.from({ length: 30 }, () => {
          const name = random.pick(['racy/a', 'racy/b', 'racy/c']);
          const digest = digestOf(random.pick(contents));
          const change = random.int(3) === 0 ? async () => void (await storage.blobs.unlink(name, digest)) : () => storage.blobs.link(name, digest);
          // Changes of one blob one at a time, as the server makes them (under the blob's lock).
          return storage.blobs.guarded(digest, change);
        });
        await Promise.all([...changes, storage.quotas.check('racy/a', 0)]);
        const truth = await linkedIn(subject.driver, 'racy');
        const stored = await record(subject.driver, 'racy');
        const bytes = [...truth.keys()].reduce((sum, d) => sum + sizes.get(d)!, 0);
        expect(stored?.usage, `round ${round}`).to.deep.equal({ bytes, blobs: truth.size, complete: true });
        expect(stored?.refs, `round ${round}`).to.deep.equal(truth);
      }
    });

    it('a crash between a link and its count is repaired by the next garbage collection, which reports it', async () => {
      await storage.policies.set('crash', { quotaBytes: 10_000 });
      const kept = Buffer.from('a blob whose count is lost');
      const lost = Buffer.from('a blob linked without being counted');
      expect(await push(storage, 'crash/app', kept)).to.equal(true);
      expect(await push(storage, 'crash/other', lost)).to.equal(true);
      // As if the process died after writing links but before counting them: another repository's link to
      // `kept`, and a marker and usage that never learned of `lost`.
      const keptDigest = digestOf(kept);
      await subject.driver.putContent(`/repositories/crash/lost/_layers/sha256/${keptDigest.hex}/link`, keptDigest.value);
      await subject.driver.delete(`/quotas/crash/blobs/sha256/${digestOf(lost).hex}`);
      await subject.driver.putContent('/quotas/crash/usage.json', JSON.stringify({ bytes: kept.length, blobs: 1, complete: true }));
      expect(await storage.quotas.usage('crash')).to.deep.equal({ bytes: kept.length, blobs: 1 });
      // Referenced by a manifest, so the collection keeps both blobs and only the record changes.
      const descriptor = (b: Buffer) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(b).value, size: b.length });
      for (const [name, blob] of [['crash/app', kept], ['crash/other', lost], ['crash/lost', kept]] as const) {
        const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { ...descriptor(blob), mediaType: 'application/vnd.oci.image.config.v1+json' }, layers: [] }));
        await storage.manifests.put(name, { kind: 'tag', tag: 'v1' }, manifest, OCI_MANIFEST);
      }

      const report = await storage.gc.run({ graceSeconds: 0, now: new Date(Date.now() + 60_000), clockSlackMs: 0 });

      const now = { bytes: kept.length + lost.length, blobs: 2 };
      expect(report.blobsRemoved).to.deep.equal([]);
      expect(report.quotaUsageCorrected).to.deep.equal([{ namespace: 'crash', was: { bytes: kept.length, blobs: 1 }, now }]);
      expect(await storage.quotas.usage('crash')).to.deep.equal(now);
      expect((await record(subject.driver, 'crash'))!.refs).to.deep.equal(new Map([[keptDigest.value, 2], [digestOf(lost).value, 1]]));
    });

    it('a record is kept only while the namespace has a quota: collection drops it, and links then count nothing', async () => {
      await storage.policies.set('gone', { quotaBytes: 10_000 });
      expect(await push(storage, 'gone/app', Buffer.from('first'))).to.equal(true);
      expect(await storage.quotas.usage('gone')).to.deep.equal({ bytes: 5, blobs: 1 });
      await storage.policies.remove('gone');
      // Until a collection notices, the record goes on being maintained (a quota set again finds it right).
      expect(await push(storage, 'gone/app', Buffer.from('second'))).to.equal(true);
      expect((await record(subject.driver, 'gone'))?.usage).to.deep.equal({ bytes: 11, blobs: 2, complete: true });

      const report = await storage.gc.run({ graceSeconds: 3600 });
      expect(report.quotaUsageCorrected).to.deep.equal([]);
      expect(await subject.driver.list('/quotas')).to.deep.equal([]);
      expect(await push(storage, 'gone/app', Buffer.from('third'))).to.equal(true);
      expect(await subject.driver.list('/quotas')).to.deep.equal([]);
      // Shown without a record: a walk, which writes none.
      expect(await storage.quotas.usage('gone')).to.deep.equal({ bytes: 16, blobs: 3 });
      expect(await subject.driver.list('/quotas')).to.deep.equal([]);
    });

    it('a policy that cannot be read keeps the records as they are, and the collection still completes', async () => {
      await storage.policies.set('unread', { quotaBytes: 10_000 });
      expect(await push(storage, 'unread/app', Buffer.from('held'))).to.equal(true);
      await subject.driver.putContent('/policies/unread', '{"quotaBytes": "not a number"}');
      const report = await storage.gc.run({ graceSeconds: 3600 });
      expect(report.quotaUsageCorrected).to.deep.equal([]);
      expect((await record(subject.driver, 'unread'))?.usage).to.deep.equal({ bytes: 4, blobs: 1, complete: true });
    });
  });
}

/** Counts the calls of each driver method on their way to the real driver. */
function counting(driver: StorageDriver): { driver: StorageDriver; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const wrapped = new Proxy(driver, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.set(String(property), (calls.get(String(property)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { driver: wrapped, calls };
}

describe('quota checks without walks', () => {
  let root: string;
  beforeEach(async () => (root = await mkdtemp(join(tmpdir(), 'berth-quota-'))));
  afterEach(() => rm(root, { recursive: true, force: true }));

  /** The storage calls of a check, an admitted link and an unlink in a namespace of `repositories` × 3 blobs. */
  async function callsWith(repositories: number): Promise<Array<Record<string, number>>> {
    const { driver, calls } = counting(new FilesystemDriver(join(root, `n${repositories}`)));
    const storage = createStorage(driver, undefined, localCoordination());
    for (let r = 0; r < repositories; r++) {
      for (let b = 0; b < 3; b++) await storage.blobs.putContent(digestOf(`blob ${r}.${b}`), Buffer.from(`blob ${r}.${b}`));
      for (let b = 0; b < 3; b++) await storage.blobs.link(`big/repo${r}`, digestOf(`blob ${r}.${b}`));
    }
    await storage.policies.set('big', { quotaBytes: 1_000_000 });
    await storage.quotas.check('big/repo0', 0); // builds the record: the one walk

    const measured: Array<Record<string, number>> = [];
    const measure = async (fn: () => Promise<unknown>) => {
      calls.clear();
      await fn();
      measured.push(Object.fromEntries(calls));
    };
    const held = digestOf('blob 0.0');
    const fresh = Buffer.from('a new blob');
    await storage.blobs.putContent(digestOf(fresh), fresh);
    await measure(() => storage.quotas.check('big/repo0', 100));
    await measure(() => storage.quotas.check('big/repo0', 2_000_000, held).catch(() => 'refused'));
    await measure(() => storage.quotas.admit('big/new', fresh.length, digestOf(fresh), () => storage.blobs.link('big/new', digestOf(fresh))));
    await measure(() => storage.blobs.unlink('big/repo0', held));
    // Every blob once, the new one in, the unlinked one (held by repo0 only) out.
    const contents = Array.from({ length: repositories * 3 }, (_, i) => `blob ${Math.floor(i / 3)}.${i % 3}`);
    const bytes = contents.reduce((sum, c) => sum + c.length, 0) + fresh.length - 'blob 0.0'.length;
    expect(await storage.quotas.usage('big')).to.deep.equal({ bytes, blobs: repositories * 3 });
    return measured;
  }

  it('a check reads the usage record and at most one marker: it lists nothing, however large the namespace', async () => {
    const small = await callsWith(2);
    const large = await callsWith(30);
    for (const calls of [...small, ...large]) expect(calls.list ?? 0, JSON.stringify(calls)).to.equal(0);
    // The same work whatever the namespace holds.
    expect(large).to.deep.equal(small);
    // A check within the quota: the policy and the usage document; past it, the marker of the blob too.
    expect(small[0]).to.deep.equal({ getContent: 2 });
    expect(small[1]).to.deep.equal({ getContent: 2, stat: 1 });
  });
});

describeUsage(
  'the filesystem',
  async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-usage-'));
    return { driver: new FilesystemDriver(root), cleanup: () => rm(root, { recursive: true, force: true }) };
  },
  [1, 2, 3],
  80,
);

describeUsage(
  'S3 (s3rver)',
  async () => {
    const s3 = await sharedS3();
    return { driver: new S3Driver(s3.driverOptions(`usage-${randomBytes(4).toString('hex')}/`)), cleanup: async () => {} };
  },
  [4],
  40,
);
