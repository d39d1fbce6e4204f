// A mirror's maxBytes: over it, the least recently pulled image goes (its manifest, its tags, its blobs'
// links in the mirror's repository), and garbage collection then frees only what no other image links.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { berthJson } from '../helpers/berth-command.ts';
import { waitFor } from '../helpers/wait.ts';
import { getManifest, storedInBerth, useMirror } from './helpers.ts';

const KiB = 1024;

/** `bytes` bytes of random text (the test registry client pushes layers as strings). */
const text = (bytes: number) => randomBytes((bytes * 3) / 4).toString('base64');

describe('pull-through cache: maxBytes eviction', function () {
  this.timeout(120_000);
  // Two of the images below fit (about 93 KiB), three do not.
  const suite = useMirror((upstream) => [{ prefix: 'dist', upstream, maxBytes: 100_000 }]);
  const { origin, mirror } = suite;

  /** Pulls the image whole through the mirror: its manifest, then each blob. */
  async function pull(name: string): Promise<void> {
    const res = await getManifest(mirror, `dist/${name}`, 'v1');
    expect(res.status, res.text).to.equal(200);
    const manifest = JSON.parse(res.text) as { config: { digest: string }; layers: { digest: string }[] };
    for (const { digest } of [manifest.config, ...manifest.layers]) {
      expect((await mirror.request('GET', `/v2/dist/${name}/blobs/${digest}`)).status).to.equal(200);
    }
  }

  const apiStatus = async (name: string) => (await mirror.request('GET', `/api/v1/repositories/${name}`)).status;

  it('evicts the least recently pulled image, and GC keeps the blob a local image shares', async () => {
    const shared = text(10 * KiB);
    const local = await mirror.pushImage('local/app', 'v1', { layers: [shared] });
    const a = await origin.pushImage('team/a', 'v1', { config: { image: 'a' }, layers: [text(40 * KiB)] });
    const b = await origin.pushImage('team/b', 'v1', { config: { image: 'b' }, layers: [text(40 * KiB), shared] });
    const c = await origin.pushImage('team/c', 'v1', { config: { image: 'c' }, layers: [text(40 * KiB)] });
    await pull('team/a');
    await pull('team/b');
    // A new process records a pull at once: a is now pulled more recently than b.
    await suite.berth.restart();
    expect((await getManifest(mirror, 'dist/team/a', 'v1')).status).to.equal(200);
    await pull('team/c');

    // The eviction is logged once it is done (its manifest deleted, its blobs unlinked).
    await waitFor(() => (suite.berth.logs.some((line) => line.includes('over maxBytes') && line.includes('dist/team/b')) ? true : undefined), 'b evicted', 10_000);
    expect(await apiStatus('dist/team/b')).to.equal(404);
    expect(await apiStatus('dist/team/a')).to.equal(200);
    expect(await apiStatus('dist/team/c')).to.equal(200);

    // GC frees b's own blobs; the layer local/app shares stays, and so do a's and c's.
    await waitFor(async () => {
      await berthJson(suite.berth, ['gc', '--grace-seconds', '0']);
      return storedInBerth(suite.berth, b.layers[0]!) ? undefined : true;
    }, "b's layer collected", 10_000);
    expect(storedInBerth(suite.berth, b.config)).to.equal(false);
    expect(storedInBerth(suite.berth, local.layers[0]!)).to.equal(true);
    for (const digest of [a.layers[0]!, a.config, c.layers[0]!, c.config]) expect(storedInBerth(suite.berth, digest), digest).to.equal(true);
    const sharedPull = await mirror.request('GET', `/v2/local/app/blobs/${local.layers[0]}`);
    expect(sharedPull.status).to.equal(200);
    expect(sharedPull.text).to.equal(shared);

    // An evicted image is simply pulled through again.
    await pull('team/b');
    expect(await apiStatus('dist/team/b')).to.equal(200);
  });
});
