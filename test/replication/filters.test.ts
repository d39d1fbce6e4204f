// A rule's filters against a real source (a second Berth, pulled through its token-free open mode and its
// referrers API): tag globs, regular expressions, semver ranges, the newest N, and platforms, with an
// index copied whole or reduced (a NEW index whose children keep their digests).
import { expect } from 'chai';
import { REDUCED_FROM } from '../../replication/index.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { OCI_INDEX, Registry, sha256 } from '../helpers/registry.ts';
import { addRule, manifestBytes, pushIndex, runRule } from './helpers.ts';

async function tagsOf(registry: Registry, name: string): Promise<string[]> {
  const res = await registry.request('GET', `/v2/${name}/tags/list`);
  return res.status === 200 ? [...(res.json.tags as string[])].sort() : [];
}

describe('replication: filters', function () {
  this.timeout(60_000);
  let src: TestBerth;
  let here: TestBerth;
  const source = new Registry('http://127.0.0.1:0');
  const local = new Registry('http://127.0.0.1:0');
  const tags = ['1.0.0', '1.2.0', '1.10.0', 'v1.5.0', '2.0.0', '2.1.0-rc.1', 'latest', 'nightly-20260101', 'nightly-20260102'];

  before(async () => {
    [src, here] = await Promise.all([startBerth(), startBerth({ env: { BERTH_REPLICATION_TICK_SECONDS: '0' } })]);
    source.base = src.url;
    local.base = here.url;
    for (const tag of tags) await source.pushImage('lib/tool', tag, { layers: [`tool ${tag}`] });
  });
  after(() => Promise.all([src?.destroy(), here?.destroy()]));

  const pull = (name: string, extra: object) => ({ name, direction: 'pull', remote: { url: src.url }, repositories: ['lib/tool'], destination: name, ...extra });

  it('copies the tags in a semver range (a leading v is a version; pre-releases are not in a plain range)', async () => {
    await addRule(local, pull('semver', { tags: { semver: '>=1.2 <3' } }));
    expect(await runRule(local, 'semver')).to.include({ outcome: 'succeeded', copied: 4 });
    expect(await tagsOf(local, 'semver/lib/tool')).to.deep.equal(['1.10.0', '1.2.0', '2.0.0', 'v1.5.0']);
  });

  it('copies the newest N of the tags a regular expression picks', async () => {
    await addRule(local, pull('nightly', { tags: { regex: 'nightly-\\d{8}' }, newest: 1 }));
    expect(await runRule(local, 'nightly')).to.include({ outcome: 'succeeded', copied: 1 });
    expect(await tagsOf(local, 'nightly/lib/tool')).to.deep.equal(['nightly-20260102']);
  });

  it('orders versions above names for the newest N, highest first, and combines globs with the rest', async () => {
    await addRule(local, pull('newest', { tags: { glob: ['*.*'] }, newest: 2 }));
    expect(await runRule(local, 'newest')).to.include({ copied: 2 });
    // 2.1.0-rc.1 is the highest version a glob lets through; 2.0.0 next.
    expect(await tagsOf(local, 'newest/lib/tool')).to.deep.equal(['2.0.0', '2.1.0-rc.1']);
  });

  describe('platforms', () => {
    let pushed: Awaited<ReturnType<typeof pushIndex>>;
    before(async () => {
      pushed = await pushIndex(source, 'lib/multi', 'v1', ['linux/amd64', 'linux/arm64', 'windows/amd64']);
      await source.pushImage('lib/single', 'v1', { config: { os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [] } } });
    });

    it('copies an index that has a wanted platform whole, and leaves out an image of another platform', async () => {
      await addRule(local, { name: 'arm-whole', direction: 'pull', remote: { url: src.url }, repositories: ['lib/multi', 'lib/single'], destination: 'whole', tags: { glob: ['v1'] }, platforms: ['linux/arm64'] });
      expect(await runRule(local, 'arm-whole')).to.include({ outcome: 'succeeded', copied: 1 });
      const index = await manifestBytes(local, 'whole/lib/multi', 'v1');
      expect(index.body.equals(pushed.index)).to.equal(true);
      for (const child of Object.values(pushed.children)) expect((await manifestBytes(local, 'whole/lib/multi', child)).status).to.equal(200);
      expect(await tagsOf(local, 'whole/lib/single')).to.deep.equal([]);
    });

    it('copies an index reduced to the wanted platforms as a new index, its children under their own digests, and skips it when the source is unchanged', async () => {
      await addRule(local, { name: 'arm-reduced', direction: 'pull', remote: { url: src.url }, repositories: ['lib/multi'], destination: 'reduced', tags: { glob: ['v1'] }, platforms: ['linux/arm64', 'windows/amd64'], reduceIndex: true });
      expect(await runRule(local, 'arm-reduced')).to.include({ outcome: 'succeeded', copied: 1 });
      const got = await manifestBytes(local, 'reduced/lib/multi', 'v1');
      expect(got.status).to.equal(200);
      expect(got.digest).to.equal(sha256(got.body)).and.not.equal(pushed.digest);
      const index = JSON.parse(got.body.toString());
      expect(index.mediaType).to.equal(OCI_INDEX);
      expect(index.annotations[REDUCED_FROM]).to.equal(pushed.digest);
      expect(index.manifests.map((m: any) => m.digest)).to.deep.equal([pushed.children['linux/arm64'], pushed.children['windows/amd64']]);
      for (const platform of ['linux/arm64', 'windows/amd64']) {
        expect((await manifestBytes(local, 'reduced/lib/multi', pushed.children[platform]!)).digest).to.equal(pushed.children[platform]);
      }
      expect((await manifestBytes(local, 'reduced/lib/multi', pushed.children['linux/amd64']!)).status).to.equal(404);
      expect(await runRule(local, 'arm-reduced')).to.include({ outcome: 'succeeded', copied: 0, skipped: 1 });
    });
  });
});
