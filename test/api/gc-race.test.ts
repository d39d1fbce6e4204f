// Pushes racing the server's own garbage collection over HTTP: 20 clients push images that reuse old,
// unreferenced layers again and again while collections run; afterwards every pushed image pulls whole.
import { expect } from 'chai';
import { useBerth } from '../helpers/berth.ts';
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256, type Registry } from '../helpers/registry.ts';

interface Pushed {
  name: string;
  tag: string;
  digest: string;
  blobs: Map<string, string>;
}

/**
 * Pushes as clients do: HEAD each blob, upload the missing ones, then the manifest; a manifest refused
 * because a blob went in between is pushed again.
 */
async function push(registry: Registry, name: string, tag: string, contents: string[]): Promise<Pushed> {
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', tag });
  const blobs = new Map([config, ...contents].map((c) => [sha256(c), c]));
  for (let attempt = 1; ; attempt++) {
    for (const [digest, content] of blobs) {
      if ((await registry.request('HEAD', `/v2/${name}/blobs/${digest}`)).status === 200) continue;
      const res = await registry.request('POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, { body: content });
      if (res.status !== 201) throw new Error(`upload of ${digest}: ${res.status} ${res.text}`);
    }
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: sha256(config), size: Buffer.byteLength(config) },
      layers: contents.map((c) => ({ mediaType: OCI_LAYER, digest: sha256(c), size: Buffer.byteLength(c) })),
    });
    const res = await registry.putManifest(name, tag, manifest, OCI_MANIFEST);
    if (res.status === 201) return { name, tag, digest: sha256(manifest), blobs };
    if (attempt >= 10 || res.json?.errors?.[0]?.code !== 'MANIFEST_BLOB_UNKNOWN') throw new Error(`manifest ${name}:${tag}: ${res.status} ${res.text}`);
  }
}

describe('pushes racing the scheduled garbage collection', function () {
  this.timeout(120_000);
  // A short grace: the old layers become candidates two seconds after their image is deleted, in the midst
  // of the pushes; a push's own new blobs are usually younger (when not, its manifest is refused and pushed again).
  const server = useBerth({ env: { BERTH_GC_INTERVAL_SECONDS: '1', BERTH_GC_GRACE_SECONDS: '2' } });

  it('20 concurrent clients reuse old layers many times during collections; every pushed image then pulls whole', async () => {
    const { registry } = server;
    const old = Array.from({ length: 6 }, (_, i) => `old layer ${i} ${'o'.repeat(500 * i)}`);
    const seed = await push(registry, 'race/seed', 'seed', old);
    expect((await registry.request('DELETE', `/v2/race/seed/manifests/${seed.digest}`)).status).to.equal(202);
    // The old layers are unreferenced now: candidates of every collection from the next one on, while
    // the clients below keep reusing them (HEAD finds them in race/seed; elsewhere they are uploaded again).
    const startedAt = Date.now();
    const collectionsSince = () =>
      server.berth.logs
        .map((l) => JSON.parse(l) as { msg?: string; startedAt?: string })
        .filter((e) => e.msg === 'garbage collection done' && Date.parse(e.startedAt!) >= startedAt).length;
    const pushed: Pushed[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, client) => {
        // Each client pushes for four seconds and until three collections have run since the pushes began.
        const more = () => collectionsSince() < 3 || Date.now() - startedAt < 4000;
        for (let round = 0; round < 3 || (more() && Date.now() - startedAt < 60_000); round++) {
          const name = client % 4 === 0 ? 'race/seed' : `race/app${client % 4}`;
          const layers = [old[(client + round) % 6]!, old[(client + round + 2) % 6]!, `new layer ${client}.${round}`];
          pushed.push(await push(registry, name, `c${client}-r${round}`, layers));
        }
      }),
    );
    expect(collectionsSince()).to.be.at.least(3);
    expect(pushed.length).to.be.at.least(60);

    for (const image of pushed) {
      const manifest = await registry.request('GET', `/v2/${image.name}/manifests/${image.tag}`);
      expect(manifest.status, `${image.name}:${image.tag}`).to.equal(200);
      expect(manifest.headers['docker-content-digest']).to.equal(image.digest);
      for (const [digest, content] of image.blobs) {
        const blob = await registry.request('GET', `/v2/${image.name}/blobs/${digest}`);
        expect(blob.status, `${digest} of ${image.name}:${image.tag}`).to.equal(200);
        expect(blob.text).to.equal(content);
      }
    }
  });
});
