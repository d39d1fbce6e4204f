import { expect } from 'chai';
import { connect } from 'node:net';
import { useBerth, startBerth } from '../helpers/berth.ts';
import { errorCode, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Registry, sha256 } from '../helpers/registry.ts';

/** Sends a request line exactly as written (no URL normalisation by a client library). */
function rawRequest(port: number, line: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`${line}\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let text = '';
    socket.on('data', (c) => (text += c.toString()));
    socket.on('end', () => resolve({ status: Number(text.slice(9, 12)), body: text.slice(text.indexOf('\r\n\r\n') + 4) }));
    socket.on('error', reject);
  });
}

describe('repository names, tags, catalog and referrers', () => {
  const suite = useBerth();
  const registry = suite.registry;

  describe('repository names', () => {
    const valid = [
      'a',
      'org/team/app',
      'a/b/c/d/e/f/g/h',
      'x0.y1_z2__w3-v4--u5---t6',
      'blobs/manifests/uploads/tags',
      'library/busybox',
      `${'a'.repeat(100)}/${'b'.repeat(100)}`,
    ];
    for (const name of valid) {
      it(`accepts ${name.length > 40 ? `a ${name.length}-character name` : name}: push, pull, tags`, async () => {
        const image = await registry.pushImage(name, 'v1');
        const get = await registry.request('GET', `/v2/${name}/manifests/v1`);
        expect(get.status).to.equal(200);
        expect(get.body.equals(image.manifest)).to.equal(true);
        const tags = await registry.request('GET', `/v2/${name}/tags/list`);
        expect(tags.json).to.deep.equal({ name, tags: ['v1'] });
        const blob = await registry.request('GET', `/v2/${name}/blobs/${image.layers[0]}`);
        expect(blob.status).to.equal(200);
      });
    }

    const invalid = ['UPPER/case', 'a//b', 'a/', '-lead', 'trail-', 'a..b', 'a.-b', 'a___b', 'ümlaut', 'a%2Fb', 'a+b', 'a b', 'x'.repeat(256)];
    for (const name of invalid) {
      it(`refuses ${JSON.stringify(name.length > 40 ? `${name.slice(0, 10)}…(${name.length})` : name)} with NAME_INVALID`, async () => {
        const res = await registry.request('GET', `/v2/${encodeURI(name)}/tags/list`);
        expect(res.status).to.equal(400);
        expect(errorCode(res)).to.equal('NAME_INVALID');
        const put = await registry.request('POST', `/v2/${encodeURI(name)}/blobs/uploads/`);
        expect(put.status).to.equal(400);
      });
    }

    it('path traversal in names, digests and upload ids is refused before it touches storage', async () => {
      const attempts = [
        'GET /v2/../../etc/passwd/tags/list HTTP/1.1',
        'GET /v2/a/../../b/tags/list HTTP/1.1',
        'GET /v2/%2e%2e/%2e%2e/etc/tags/list HTTP/1.1',
        'POST /v2/../x/blobs/uploads/ HTTP/1.1',
        `GET /v2/ok/blobs/sha256:..%2F..%2F${'0'.repeat(58)} HTTP/1.1`,
        'PATCH /v2/ok/blobs/uploads/.. HTTP/1.1',
        'GET /v2/ok/manifests/..%2F..%2Fx HTTP/1.1',
      ];
      for (const line of attempts) {
        const res = await rawRequest(suite.berth.port, line);
        expect(res.status, line).to.be.within(400, 499);
        expect(JSON.parse(res.body).errors[0].code, line).to.be.a('string');
      }
      const alive = await registry.request('GET', '/v2/');
      expect(alive.status).to.equal(200);
    });
  });

  describe('tags list', () => {
    const tags = ['1.0', '1.1', '2.0', 'beta', 'latest', 'Zeta', '_under'];
    before(async () => {
      const image = await registry.pushImage('paged/app', tags[0]!);
      for (const tag of tags.slice(1)) await registry.putManifest('paged/app', tag, image.manifest, OCI_MANIFEST);
    });

    it('lists every tag in lexical order', async () => {
      const res = await registry.request('GET', '/v2/paged/app/tags/list');
      expect(res.status).to.equal(200);
      expect(res.json).to.deep.equal({ name: 'paged/app', tags: [...tags].sort() });
      expect(res.headers.link).to.equal(undefined);
    });

    it('paginates with n and last, with a Link header to the next page', async () => {
      const sorted = [...tags].sort();
      const seen: string[] = [];
      let path: string | undefined = '/v2/paged/app/tags/list?n=3';
      let pages = 0;
      while (path) {
        const res = await registry.request('GET', path);
        expect(res.status).to.equal(200);
        expect(res.json.tags.length).to.be.at.most(3);
        seen.push(...res.json.tags);
        pages++;
        const link = res.headers.link;
        path = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1] : undefined;
      }
      expect(seen).to.deep.equal(sorted);
      expect(pages).to.equal(3);
      const after = await registry.request('GET', '/v2/paged/app/tags/list?n=2&last=2.0');
      expect(after.json.tags).to.deep.equal(sorted.filter((t) => t > '2.0').slice(0, 2));
      const none = await registry.request('GET', '/v2/paged/app/tags/list?n=0');
      expect(none.json.tags).to.deep.equal([]);
    });

    it('an invalid n is refused', async () => {
      const res = await registry.request('GET', '/v2/paged/app/tags/list?n=-1');
      expect(res.status).to.equal(400);
      expect(errorCode(res)).to.equal('PAGINATION_NUMBER_INVALID');
    });

    it('an unknown repository is NAME_UNKNOWN', async () => {
      const res = await registry.request('GET', '/v2/no/such/repo/tags/list');
      expect(res.status).to.equal(404);
      expect(errorCode(res)).to.equal('NAME_UNKNOWN');
    });

    it('a repository whose last manifest is deleted lists no tags while it holds blobs, and is unknown once empty', async () => {
      const image = await registry.pushImage('emptied/app', 'v1');
      const del = await registry.request('DELETE', `/v2/emptied/app/manifests/${image.digest}`);
      expect(del.status).to.equal(202);
      const listed = await registry.request('GET', '/v2/emptied/app/tags/list');
      expect(listed.status).to.equal(200);
      expect(listed.json).to.deep.equal({ name: 'emptied/app', tags: [] });
      for (const digest of [image.config, ...image.layers]) {
        expect((await registry.request('DELETE', `/v2/emptied/app/blobs/${digest}`)).status).to.equal(202);
      }
      const gone = await registry.request('GET', '/v2/emptied/app/tags/list');
      expect(gone.status).to.equal(404);
      expect(errorCode(gone)).to.equal('NAME_UNKNOWN');
    });

    it('a deleted tag leaves the list', async () => {
      await registry.request('DELETE', '/v2/paged/app/manifests/beta');
      const res = await registry.request('GET', '/v2/paged/app/tags/list');
      expect(res.json.tags).to.not.include('beta');
    });
  });

  describe('catalog', () => {
    it('lists repositories from the index, sorted, with pagination', async () => {
      const fresh = await startBerth();
      try {
        const r = new Registry(fresh.url);
        const names = ['c/one', 'a/two', 'b/three', 'a/one/deep'];
        for (const name of names) await r.pushImage(name, 'v1');
        // A repository with only a blob is not in the catalog: it has no manifest.
        await r.pushBlob('blob/only', 'x');
        const all = await r.request('GET', '/v2/_catalog');
        expect(all.status).to.equal(200);
        expect(all.json).to.deep.equal({ repositories: [...names].sort() });
        const first = await r.request('GET', '/v2/_catalog?n=2');
        expect(first.json.repositories).to.deep.equal(['a/one/deep', 'a/two']);
        expect(first.headers.link).to.equal('</v2/_catalog?last=a%2Ftwo&n=2>; rel="next"');
        const second = await r.request('GET', '/v2/_catalog?n=2&last=a/two');
        expect(second.json.repositories).to.deep.equal(['b/three', 'c/one']);
        // Deleting the last manifest of a repository removes it from the catalog.
        const digest = (await r.request('HEAD', '/v2/b/three/manifests/v1')).headers['docker-content-digest'];
        await r.request('DELETE', `/v2/b/three/manifests/${digest}`);
        const after = await r.request('GET', '/v2/_catalog');
        expect(after.json.repositories).to.deep.equal(['a/one/deep', 'a/two', 'c/one']);
      } finally {
        await fresh.destroy();
      }
    });

    it('is served from the catalog index, not by walking repositories', async () => {
      expect((await suite.berth.storage.list('/catalog')).length).to.be.greaterThan(0);
    });
  });

  describe('referrers', () => {
    let subject: { manifest: Buffer; digest: string };
    let signature: string;
    let sbom: string;
    let indexReferrer: string;

    before(async () => {
      subject = await registry.pushImage('refs/app', 'v1');
      const empty = await registry.pushBlob('refs/app', '{}');
      const artifact = (artifactType: string | undefined, configType: string, annotations: object) =>
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          ...(artifactType ? { artifactType } : {}),
          config: { mediaType: configType, digest: empty, size: 2 },
          layers: [],
          subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.manifest.length },
          annotations,
        });
      const sig = artifact('application/vnd.example.signature', 'application/vnd.oci.empty.v1+json', { 'org.example.kind': 'sig' });
      const put = await registry.putManifest('refs/app', sha256(sig), sig, OCI_MANIFEST);
      expect(put.status).to.equal(201);
      expect(put.headers['oci-subject']).to.equal(subject.digest);
      signature = sha256(sig);
      // No artifactType: the config media type stands in for it.
      const bom = artifact(undefined, 'application/vnd.example.sbom', { 'org.example.kind': 'sbom' });
      await registry.putManifest('refs/app', 'sbom', bom, OCI_MANIFEST);
      sbom = sha256(bom);
      const idx = JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        artifactType: 'application/vnd.example.bundle',
        manifests: [],
        subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.manifest.length },
      });
      await registry.putManifest('refs/app', sha256(idx), idx, OCI_INDEX);
      indexReferrer = sha256(idx);
    });

    it('lists every manifest whose subject is the digest, as an OCI image index', async () => {
      const res = await registry.request('GET', `/v2/refs/app/referrers/${subject.digest}`);
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.equal(OCI_INDEX);
      expect(res.json.schemaVersion).to.equal(2);
      expect(res.json.mediaType).to.equal(OCI_INDEX);
      const byDigest = Object.fromEntries(res.json.manifests.map((d: any) => [d.digest, d]));
      expect(Object.keys(byDigest).sort()).to.deep.equal([signature, sbom, indexReferrer].sort());
      expect(byDigest[signature]).to.include({ mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.signature' });
      expect(byDigest[signature].annotations).to.deep.equal({ 'org.example.kind': 'sig' });
      expect(byDigest[sbom].artifactType).to.equal('application/vnd.example.sbom');
      expect(byDigest[indexReferrer]).to.include({ mediaType: OCI_INDEX, artifactType: 'application/vnd.example.bundle' });
      expect(res.headers['oci-filters-applied']).to.equal(undefined);
    });

    it('filters by artifactType and says so with OCI-Filters-Applied', async () => {
      const res = await registry.request('GET', `/v2/refs/app/referrers/${subject.digest}?artifactType=application/vnd.example.sbom`);
      expect(res.headers['oci-filters-applied']).to.equal('artifactType');
      expect(res.json.manifests.map((d: any) => d.digest)).to.deep.equal([sbom]);
    });

    it('a subject that does not exist (yet) is accepted, and an unknown digest lists nothing', async () => {
      const empty = await registry.pushBlob('refs/app', '{}');
      const orphanSubject = sha256('future image');
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: empty, size: 2 },
        layers: [],
        subject: { mediaType: OCI_MANIFEST, digest: orphanSubject, size: 10 },
      });
      const put = await registry.putManifest('refs/app', sha256(body), body, OCI_MANIFEST);
      expect(put.status).to.equal(201);
      expect(put.headers['oci-subject']).to.equal(orphanSubject);
      const res = await registry.request('GET', `/v2/refs/app/referrers/${orphanSubject}`);
      expect(res.json.manifests.map((d: any) => d.digest)).to.deep.equal([sha256(body)]);
      const none = await registry.request('GET', `/v2/refs/app/referrers/${sha256('nobody')}`);
      expect(none.status).to.equal(200);
      expect(none.json.manifests).to.deep.equal([]);
    });

    it('deleting a referrer removes it from the list', async () => {
      const del = await registry.request('DELETE', `/v2/refs/app/manifests/${signature}`);
      expect(del.status).to.equal(202);
      const res = await registry.request('GET', `/v2/refs/app/referrers/${subject.digest}`);
      expect(res.json.manifests.map((d: any) => d.digest)).to.not.include(signature);
    });

    it('an invalid digest is DIGEST_INVALID', async () => {
      const res = await registry.request('GET', '/v2/refs/app/referrers/latest');
      expect(res.status).to.equal(400);
      expect(errorCode(res)).to.equal('DIGEST_INVALID');
    });
  });
});
