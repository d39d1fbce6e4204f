import { expect } from 'chai';
import { useBerth } from '../helpers/berth.ts';
import {
  DOCKER_LIST,
  DOCKER_MANIFEST,
  errorCode,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER,
  OCI_MANIFEST,
  sha256,
} from '../helpers/registry.ts';

describe('manifests: push, pull, validate, delete', () => {
  const suite = useBerth();
  const registry = suite.registry;

  describe('the four manifest types round-trip byte-for-byte', () => {
    it('OCI image manifest by tag and by digest, with odd formatting kept as pushed', async () => {
      const config = await registry.pushBlob('types/oci', '{"os":"linux","architecture":"amd64"}');
      const layer = await registry.pushBlob('types/oci', 'layer');
      // Key order, spacing and a trailing newline that JSON.stringify would never produce.
      const manifest = Buffer.from(
        `{\n  "schemaVersion": 2,   "mediaType": "${OCI_MANIFEST}",\n` +
          `  "layers": [ {"size": 5, "digest": "${layer}", "mediaType": "${OCI_LAYER}"} ],\n` +
          `  "config": {"mediaType": "${OCI_CONFIG}", "digest": "${config}", "size": 37},\n` +
          `  "annotations": {"z": "1", "a": "2"}\n}\n`,
      );
      const put = await registry.putManifest('types/oci', 'v1', manifest, OCI_MANIFEST);
      expect(put.status).to.equal(201);
      const digest = sha256(manifest);
      expect(put.headers['docker-content-digest']).to.equal(digest);
      expect(put.headers.location).to.equal(`/v2/types/oci/manifests/${digest}`);
      expect(put.body.length).to.equal(0);

      for (const ref of ['v1', digest]) {
        const get = await registry.request('GET', `/v2/types/oci/manifests/${ref}`, { headers: { Accept: OCI_MANIFEST } });
        expect(get.status).to.equal(200);
        expect(get.body.equals(manifest), 'bytes as pushed').to.equal(true);
        expect(get.headers['content-type']).to.equal(OCI_MANIFEST);
        expect(get.headers['docker-content-digest']).to.equal(digest);
        expect(get.headers['content-length']).to.equal(String(manifest.length));
        const head = await registry.request('HEAD', `/v2/types/oci/manifests/${ref}`, { headers: { Accept: OCI_MANIFEST } });
        expect(head.status).to.equal(200);
        expect(head.headers['content-length']).to.equal(String(manifest.length));
        expect(head.headers['docker-content-digest']).to.equal(digest);
        expect(head.headers['content-type']).to.equal(OCI_MANIFEST);
        expect(head.body.length).to.equal(0);
      }
    });

    it('Docker schema2 manifest', async () => {
      const image = await registry.pushImage('types/docker', 'latest', { mediaType: DOCKER_MANIFEST });
      const get = await registry.request('GET', '/v2/types/docker/manifests/latest', { headers: { Accept: DOCKER_MANIFEST } });
      expect(get.status).to.equal(200);
      expect(get.headers['content-type']).to.equal(DOCKER_MANIFEST);
      expect(get.body.equals(image.manifest)).to.equal(true);
    });

    it('OCI image index and Docker manifest list whose children exist', async () => {
      const amd = await registry.pushImage('types/multi', 'amd64', { config: { os: 'linux', architecture: 'amd64' } });
      const arm = await registry.pushImage('types/multi', 'arm64', { config: { os: 'linux', architecture: 'arm64' } });
      for (const [mediaType, tag] of [
        [OCI_INDEX, 'oci'],
        [DOCKER_LIST, 'docker'],
      ] as const) {
        const index = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType,
            manifests: [
              { mediaType: OCI_MANIFEST, digest: amd.digest, size: amd.manifest.length, platform: { os: 'linux', architecture: 'amd64' } },
              { mediaType: OCI_MANIFEST, digest: arm.digest, size: arm.manifest.length, platform: { os: 'linux', architecture: 'arm64' } },
            ],
          }),
        );
        const put = await registry.putManifest('types/multi', tag, index, mediaType);
        expect(put.status, put.text).to.equal(201);
        const get = await registry.request('GET', `/v2/types/multi/manifests/${tag}`, { headers: { Accept: `${OCI_INDEX}, ${DOCKER_LIST}` } });
        expect(get.headers['content-type']).to.equal(mediaType);
        expect(get.body.equals(index)).to.equal(true);
      }
    });

    it('a manifest without a mediaType field is served with the Content-Type it was pushed with', async () => {
      const config = await registry.pushBlob('types/bare', '{}');
      const manifest = JSON.stringify({ schemaVersion: 2, config: { mediaType: OCI_CONFIG, digest: config, size: 2 }, layers: [] });
      const put = await registry.putManifest('types/bare', 'x', manifest, OCI_MANIFEST);
      expect(put.status).to.equal(201);
      const get = await registry.request('GET', '/v2/types/bare/manifests/x');
      expect(get.headers['content-type']).to.equal(OCI_MANIFEST);
    });

    it('a manifest pushed by digest is stored under that digest with no tag', async () => {
      const image = await registry.pushImage('types/bydigest', 'tmp');
      const other = Buffer.from(image.manifest.toString().replace('}', ', "annotations": {"k":"v"}}'));
      const digest = sha256(other);
      const put = await registry.putManifest('types/bydigest', digest, other, OCI_MANIFEST);
      expect(put.status).to.equal(201);
      expect(put.headers['docker-content-digest']).to.equal(digest);
      const get = await registry.request('GET', `/v2/types/bydigest/manifests/${digest}`);
      expect(get.body.equals(other)).to.equal(true);
    });
  });

  describe('Accept negotiation', () => {
    it('an OCI manifest is unknown to a client that accepts only Docker types, known with */*', async () => {
      await registry.pushImage('accept/oci', 'v1');
      const docker = await registry.request('GET', '/v2/accept/oci/manifests/v1', { headers: { Accept: DOCKER_MANIFEST } });
      expect(docker.status).to.equal(404);
      expect(errorCode(docker)).to.equal('MANIFEST_UNKNOWN');
      const any = await registry.request('GET', '/v2/accept/oci/manifests/v1', { headers: { Accept: '*/*' } });
      expect(any.status).to.equal(200);
      const both = await registry.request('GET', '/v2/accept/oci/manifests/v1', {
        headers: { Accept: `${DOCKER_MANIFEST};q=0.9, ${OCI_MANIFEST}` },
      });
      expect(both.status).to.equal(200);
    });
  });

  describe('validation', () => {
    let config: string;
    let layer: string;
    before(async () => {
      config = await registry.pushBlob('valid/app', '{}');
      layer = await registry.pushBlob('valid/app', 'layer-bytes');
    });

    function manifestWith(fields: object): string {
      return JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: config, size: 2 },
        layers: [{ mediaType: OCI_LAYER, digest: layer, size: 11 }],
        ...fields,
      });
    }

    async function expectRefused(body: string, code: string, mediaType = OCI_MANIFEST, status = 400) {
      const res = await registry.putManifest('valid/app', 'refused', body, mediaType);
      expect(res.status, res.text).to.equal(status);
      expect(errorCode(res)).to.equal(code);
      const get = await registry.request('GET', '/v2/valid/app/manifests/refused');
      expect(get.status, 'nothing stored').to.equal(404);
    }

    it('malformed JSON is MANIFEST_INVALID', () => expectRefused('{"schemaVersion": 2,', 'MANIFEST_INVALID'));
    it('a JSON array is MANIFEST_INVALID', () => expectRefused('[1,2]', 'MANIFEST_INVALID'));
    it('a wrong schemaVersion is MANIFEST_INVALID', () => expectRefused(manifestWith({ schemaVersion: 3 }), 'MANIFEST_INVALID'));
    it('a missing config is MANIFEST_INVALID', () => expectRefused(manifestWith({ config: undefined }), 'MANIFEST_INVALID'));
    it('layers that are not a list are MANIFEST_INVALID', () => expectRefused(manifestWith({ layers: {} }), 'MANIFEST_INVALID'));
    it('a descriptor with a negative size is MANIFEST_INVALID', () =>
      expectRefused(manifestWith({ layers: [{ mediaType: OCI_LAYER, digest: layer, size: -1 }] }), 'MANIFEST_INVALID'));
    it('a descriptor size that does not match the blob is MANIFEST_INVALID', () =>
      expectRefused(manifestWith({ layers: [{ mediaType: OCI_LAYER, digest: layer, size: 12 }] }), 'MANIFEST_INVALID'));
    it('a descriptor with a malformed digest is DIGEST_INVALID', () =>
      expectRefused(manifestWith({ layers: [{ mediaType: OCI_LAYER, digest: 'sha256:xyz', size: 1 }] }), 'DIGEST_INVALID'));
    it('a mediaType that contradicts Content-Type is MANIFEST_INVALID', () =>
      expectRefused(manifestWith({}), 'MANIFEST_INVALID', DOCKER_MANIFEST));
    it('an unknown manifest media type is MANIFEST_INVALID', () =>
      expectRefused(manifestWith({ mediaType: 'application/vnd.example+json' }), 'MANIFEST_INVALID', 'application/vnd.example+json'));
    it('a Docker schema1 manifest is refused with MANIFEST_INVALID', () =>
      expectRefused(JSON.stringify({ schemaVersion: 1, name: 'valid/app', tag: 'x', fsLayers: [] }), 'MANIFEST_INVALID', 'application/vnd.docker.distribution.manifest.v1+prettyjws'));
    it('a layer the repository does not have is MANIFEST_BLOB_UNKNOWN', async () => {
      const missing = sha256('never pushed');
      const res = await registry.putManifest('valid/app', 'refused', manifestWith({ layers: [{ mediaType: OCI_LAYER, digest: missing, size: 12 }] }), OCI_MANIFEST);
      expect(res.status).to.equal(400);
      expect(errorCode(res)).to.equal('MANIFEST_BLOB_UNKNOWN');
      expect(JSON.stringify(res.json.errors[0].detail)).to.include(missing);
    });
    it('a config blob of another repository is MANIFEST_BLOB_UNKNOWN', async () => {
      const foreign = await registry.pushBlob('valid/elsewhere', '{"other":true}');
      await expectRefused(manifestWith({ config: { mediaType: OCI_CONFIG, digest: foreign, size: 14 } }), 'MANIFEST_BLOB_UNKNOWN');
    });
    it('an index whose child manifest is missing is MANIFEST_BLOB_UNKNOWN', () =>
      expectRefused(
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: sha256('nope'), size: 4 }] }),
        'MANIFEST_BLOB_UNKNOWN',
        OCI_INDEX,
      ));
    it('a digest reference that does not match the body is DIGEST_INVALID', async () => {
      const res = await registry.putManifest('valid/app', sha256('different'), manifestWith({}), OCI_MANIFEST);
      expect(res.status).to.equal(400);
      expect(errorCode(res)).to.equal('DIGEST_INVALID');
    });
    it('an invalid tag is MANIFEST_INVALID on PUT and unknown on GET', async () => {
      const put = await registry.putManifest('valid/app', '-bad', manifestWith({}), OCI_MANIFEST);
      expect(put.status).to.equal(400);
      expect(errorCode(put)).to.equal('MANIFEST_INVALID');
      const long = 'a'.repeat(129);
      const get = await registry.request('GET', `/v2/valid/app/manifests/${long}`);
      expect(get.status).to.equal(404);
      expect(errorCode(get)).to.equal('MANIFEST_UNKNOWN');
    });
    it('a manifest over 4 MiB is refused with 413 and nothing is stored', async () => {
      const huge = manifestWith({ annotations: { pad: 'x'.repeat(4 * 1024 * 1024) } });
      await expectRefused(huge, 'SIZE_INVALID', OCI_MANIFEST, 413);
    });
    it('non-distributable (foreign) layers with urls need not be in the registry', async () => {
      const foreign = {
        mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
        digest: sha256('windows base layer'),
        size: 123456,
        urls: ['https://example.invalid/base.tar.gz'],
      };
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: DOCKER_MANIFEST,
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: config, size: 2 },
        layers: [foreign, { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: layer, size: 11 }],
      });
      const res = await registry.putManifest('valid/app', 'windows', body, DOCKER_MANIFEST);
      expect(res.status, res.text).to.equal(201);
      const withoutUrls = JSON.parse(body);
      delete withoutUrls.layers[0].urls;
      const refused = await registry.putManifest('valid/app', 'windows2', JSON.stringify(withoutUrls), DOCKER_MANIFEST);
      expect(refused.status).to.equal(400);
      expect(errorCode(refused)).to.equal('MANIFEST_BLOB_UNKNOWN');
    });
    it('a refused push leaves the existing tag exactly as it was', async () => {
      const good = manifestWith({ annotations: { version: 'good' } });
      expect((await registry.putManifest('valid/app', 'stable', good, OCI_MANIFEST)).status).to.equal(201);
      const bad = await registry.putManifest('valid/app', 'stable', '{"schemaVersion":2', OCI_MANIFEST);
      expect(bad.status).to.equal(400);
      const get = await registry.request('GET', '/v2/valid/app/manifests/stable');
      expect(get.text).to.equal(good);
    });
  });

  describe('delete and unknown', () => {
    it('GET of an unknown tag or digest is MANIFEST_UNKNOWN (404)', async () => {
      for (const ref of ['nothere', sha256('nothing')]) {
        const res = await registry.request('GET', `/v2/gone/app/manifests/${ref}`);
        expect(res.status).to.equal(404);
        expect(errorCode(res)).to.equal('MANIFEST_UNKNOWN');
      }
    });

    it('DELETE of a tag removes only the tag', async () => {
      const image = await registry.pushImage('gone/app', 'v1');
      await registry.putManifest('gone/app', 'v2', image.manifest, OCI_MANIFEST);
      const del = await registry.request('DELETE', '/v2/gone/app/manifests/v1');
      expect(del.status).to.equal(202);
      expect((await registry.request('GET', '/v2/gone/app/manifests/v1')).status).to.equal(404);
      expect((await registry.request('GET', `/v2/gone/app/manifests/${image.digest}`)).status).to.equal(200);
      expect((await registry.request('GET', '/v2/gone/app/manifests/v2')).status).to.equal(200);
    });

    it('DELETE by digest removes the manifest and every tag pointing at it', async () => {
      const image = await registry.pushImage('gone/app2', 'a');
      await registry.putManifest('gone/app2', 'b', image.manifest, OCI_MANIFEST);
      const del = await registry.request('DELETE', `/v2/gone/app2/manifests/${image.digest}`);
      expect(del.status).to.equal(202);
      for (const ref of ['a', 'b', image.digest]) {
        expect((await registry.request('GET', `/v2/gone/app2/manifests/${ref}`)).status, ref).to.equal(404);
      }
      // The repository still holds its blobs, so it is still there, without tags.
      const tags = await registry.request('GET', '/v2/gone/app2/tags/list');
      expect(tags.status).to.equal(200);
      expect(tags.json.tags).to.deep.equal([]);
      const again = await registry.request('DELETE', `/v2/gone/app2/manifests/${image.digest}`);
      expect(again.status).to.equal(404);
      expect(errorCode(again)).to.equal('MANIFEST_UNKNOWN');
    });

    it('a manifest pushed to one repository is unknown in another', async () => {
      const image = await registry.pushImage('iso/one', 'v1');
      const res = await registry.request('GET', `/v2/iso/two/manifests/${image.digest}`);
      expect(res.status).to.equal(404);
    });
  });
});
