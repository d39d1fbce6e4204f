// After garbage collection, skopeo copies every image that is still tagged back out of Berth, digest for
// digest: GC removed what was unreachable and nothing an image needs.
import { expect } from 'chai';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { OciLayout, pseudoRandomBytes, readOciLayout, type Descriptor, type TarEntry } from '../helpers/oci-layout.ts';
import { Registry } from '../helpers/registry.ts';
import { storedBlobs } from '../../storage/walk.ts';
import { waitFor } from '../helpers/wait.ts';

function files(name: string, size: number): TarEntry[] {
  return [{ path: `opt/${name}.bin`, content: pseudoRandomBytes(name, size) }];
}

describe('e2e: skopeo round trip of every tagged image after garbage collection', function () {
  this.timeout(180_000);
  let berth: TestBerth;
  let skopeo: Skopeo;
  let work: string;

  before(async () => {
    berth = await startBerth({
      // A grace period longer than a push of the index takes on a loaded machine: an index's children are
      // untagged until the index arrives, and a collection with no grace may take them first (as the
      // operator who sets no grace asks).
      env: { BERTH_GC_INTERVAL_SECONDS: '1', BERTH_GC_GRACE_SECONDS: '8', BERTH_GC_DELETE_UNTAGGED: 'true' },
    });
    skopeo = new Skopeo();
    work = tempDir('gc-layouts');
  });
  after(async () => {
    await berth?.destroy();
    skopeo?.cleanup();
    if (work) removeDir(work);
  });

  it('collects the deleted image and the untagged one; every tagged image comes back digest-identical', async () => {
    const layout = new OciLayout(join(work, 'source'));
    const base = files('base', 200_000);
    const images: Record<string, Descriptor> = {
      '1.0': await layout.addImage({ platform: { architecture: 'amd64', os: 'linux' }, layers: [base, files('app-1', 50_000)] }),
      '2.0': await layout.addImage({ platform: { architecture: 'amd64', os: 'linux' }, layers: [base, files('app-2', 60_000)] }),
      scratch: await layout.addImage({ platform: { architecture: 'amd64', os: 'linux' }, layers: [files('scratch', 70_000)] }),
    };
    const amd = await layout.addImage({ platform: { architecture: 'amd64', os: 'linux' }, layers: [base, files('multi-amd64', 30_000)] });
    const arm = await layout.addImage({ platform: { architecture: 'arm64', os: 'linux' }, layers: [files('multi-arm64', 30_000)] });
    images.multi = layout.addIndex([
      { ...amd, platform: { architecture: 'amd64', os: 'linux' } } as Descriptor,
      { ...arm, platform: { architecture: 'arm64', os: 'linux' } } as Descriptor,
    ]);
    layout.writeIndexJson(images);

    const push = (tag: string, repo: string) =>
      skopeo.run(['copy', '--all', '--dest-tls-verify=false', `oci:${layout.dir}:${tag}`, `docker://${berth.host}/${repo}:${tag}`]);
    for (const tag of ['1.0', '2.0', 'multi']) await push(tag, 'gc/app');
    await push('scratch', 'gc/scratch');
    await push('1.0', 'gc/copy');

    // 2.0 loses its tag (its manifest is then untagged), scratch its manifest: both become garbage.
    const registry = new Registry(berth.url);
    expect((await registry.request('DELETE', '/v2/gc/app/manifests/2.0')).status).to.equal(202);
    expect((await registry.request('DELETE', `/v2/gc/scratch/manifests/${images.scratch!.digest}`)).status).to.equal(202);

    const source = readOciLayout(layout.dir);
    const manifestOf = (d: Descriptor) => JSON.parse(source.blobs.get(d.digest)!.toString()) as { config: Descriptor; layers: Descriptor[] };
    const blobsOf = (d: Descriptor) => [d.digest, manifestOf(d).config.digest, ...manifestOf(d).layers.map((l) => l.digest)];
    const reachable = new Set([...blobsOf(images['1.0']!), ...blobsOf(amd), ...blobsOf(arm), images.multi!.digest]);
    await waitFor(
      async () => {
        const stored = (await storedBlobs(berth.storage)).map((d) => d.value);
        return stored.length === reachable.size && stored.every((d) => reachable.has(d));
      },
      'only the reachable blobs to remain',
      30_000,
    );

    const stillTagged: Array<[string, string]> = [['gc/app', '1.0'], ['gc/app', 'multi'], ['gc/copy', '1.0']];
    for (const [repo, expected] of [['gc/app', ['1.0', 'multi']], ['gc/copy', ['1.0']]] as const) {
      const tags = await skopeo.json<{ Tags: string[] }>(['list-tags', '--tls-verify=false', `docker://${berth.host}/${repo}`]);
      expect([...tags.Tags].sort()).to.deep.equal(expected);
    }
    for (const [repo, tag] of stillTagged) {
      const out = join(work, `${repo.replace('/', '-')}-${tag}`);
      await skopeo.run(['copy', '--all', '--src-tls-verify=false', `docker://${berth.host}/${repo}:${tag}`, `oci:${out}:${tag}`]);
      const pulled = readOciLayout(out);
      expect(pulled.refs.get(tag)?.digest, `${repo}:${tag}`).to.equal(images[tag]!.digest);
      for (const [digest, bytes] of pulled.blobs) expect(bytes.equals(source.blobs.get(digest)!), digest).to.equal(true);
    }
  });
});
