import { expect } from 'chai';
import { connect } from 'node:net';
import { useBerth } from '../helpers/berth.ts';
import { errorCode, sha256, sha512 } from '../helpers/registry.ts';

describe('blobs: pull, push, mount, delete', () => {
  const suite = useBerth();
  const registry = suite.registry;

  describe('monolithic push and pull', () => {
    const data = Buffer.from('0123456789abcdefghij');
    const digest = sha256(data);

    it('POST ?digest= with the body stores the blob and answers 201 with Location and digest', async () => {
      const res = await registry.request('POST', `/v2/mono/app/blobs/uploads/?digest=${digest}`, { body: data });
      expect(res.status).to.equal(201);
      expect(res.headers.location).to.equal(`/v2/mono/app/blobs/${digest}`);
      expect(res.headers['docker-content-digest']).to.equal(digest);
      expect(res.headers['content-length']).to.equal('0');
      expect(res.body.length).to.equal(0);
    });

    it('GET serves the bytes with digest, length, ETag and content type', async () => {
      const res = await registry.request('GET', `/v2/mono/app/blobs/${digest}`);
      expect(res.status).to.equal(200);
      expect(res.body.equals(data)).to.equal(true);
      expect(res.headers['docker-content-digest']).to.equal(digest);
      expect(res.headers['content-length']).to.equal(String(data.length));
      expect(res.headers.etag).to.equal(`"${digest}"`);
      expect(res.headers['content-type']).to.equal('application/octet-stream');
    });

    it('HEAD carries the real Content-Length and no body', async () => {
      const res = await registry.request('HEAD', `/v2/mono/app/blobs/${digest}`);
      expect(res.status).to.equal(200);
      expect(res.headers['content-length']).to.equal(String(data.length));
      expect(res.headers['docker-content-digest']).to.equal(digest);
      expect(res.body.length).to.equal(0);
    });

    it('If-None-Match with the ETag answers 304', async () => {
      const res = await registry.request('GET', `/v2/mono/app/blobs/${digest}`, { headers: { 'If-None-Match': `"${digest}"` } });
      expect(res.status).to.equal(304);
      expect(res.body.length).to.equal(0);
    });

    it('Range requests answer 206 with Content-Range, including open-ended and suffix ranges', async () => {
      const mid = await registry.request('GET', `/v2/mono/app/blobs/${digest}`, { headers: { Range: 'bytes=2-5' } });
      expect(mid.status).to.equal(206);
      expect(mid.text).to.equal('2345');
      expect(mid.headers['content-range']).to.equal(`bytes 2-5/${data.length}`);
      expect(mid.headers['content-length']).to.equal('4');
      const open = await registry.request('GET', `/v2/mono/app/blobs/${digest}`, { headers: { Range: 'bytes=15-' } });
      expect(open.status).to.equal(206);
      expect(open.text).to.equal('fghij');
      const suffix = await registry.request('GET', `/v2/mono/app/blobs/${digest}`, { headers: { Range: 'bytes=-3' } });
      expect(suffix.text).to.equal('hij');
      expect(suffix.headers['content-range']).to.equal(`bytes 17-19/${data.length}`);
      const clipped = await registry.request('GET', `/v2/mono/app/blobs/${digest}`, { headers: { Range: 'bytes=18-100' } });
      expect(clipped.text).to.equal('ij');
    });

    it('an unsatisfiable range answers 416 with the size', async () => {
      const res = await registry.request('GET', `/v2/mono/app/blobs/${digest}`, { headers: { Range: 'bytes=20-30' } });
      expect(res.status).to.equal(416);
      expect(res.headers['content-range']).to.equal(`bytes */${data.length}`);
    });

    it('a blob is served only by the repository it was pushed to', async () => {
      const res = await registry.request('GET', `/v2/other/app/blobs/${digest}`);
      expect(res.status).to.equal(404);
      expect(errorCode(res)).to.equal('BLOB_UNKNOWN');
      const head = await registry.request('HEAD', `/v2/other/app/blobs/${digest}`);
      expect(head.status).to.equal(404);
      expect(head.body.length).to.equal(0);
    });

    it('POST then PUT with the whole body is a monolithic upload too', async () => {
      const blob = Buffer.from('put-monolithic');
      const location = await registry.startUpload('mono/app');
      const res = await registry.request('PUT', `${location}?digest=${sha256(blob)}`, { body: blob });
      expect(res.status).to.equal(201);
      const back = await registry.request('GET', `/v2/mono/app/blobs/${sha256(blob)}`);
      expect(back.text).to.equal('put-monolithic');
    });

    it('sha512 digests are accepted and verified', async () => {
      const blob = Buffer.from('sha512 content');
      const digest512 = sha512(blob);
      const res = await registry.request('POST', `/v2/mono/app/blobs/uploads/?digest=${digest512}`, { body: blob });
      expect(res.status).to.equal(201);
      const back = await registry.request('GET', `/v2/mono/app/blobs/${digest512}`);
      expect(back.text).to.equal('sha512 content');
      expect(back.headers['docker-content-digest']).to.equal(digest512);
    });

    it('an empty blob can be pushed and pulled', async () => {
      const res = await registry.request('POST', `/v2/mono/app/blobs/uploads/?digest=${sha256('')}`, { body: '' });
      expect(res.status).to.equal(201);
      const back = await registry.request('GET', `/v2/mono/app/blobs/${sha256('')}`);
      expect(back.status).to.equal(200);
      expect(back.headers['content-length']).to.equal('0');
    });
  });

  describe('digest verification', () => {
    it('a wrong digest answers DIGEST_INVALID and stores nothing', async () => {
      const claimed = sha256('something else');
      const res = await registry.request('POST', `/v2/verify/app/blobs/uploads/?digest=${claimed}`, { body: 'actual bytes' });
      expect(res.status).to.equal(400);
      expect(errorCode(res)).to.equal('DIGEST_INVALID');
      const get = await registry.request('HEAD', `/v2/verify/app/blobs/${claimed}`);
      expect(get.status).to.equal(404);
      const real = await registry.request('HEAD', `/v2/verify/app/blobs/${sha256('actual bytes')}`);
      expect(real.status).to.equal(404);
    });

    it('a chunked upload finished with a wrong digest is refused, and can still finish with the right one', async () => {
      const location = await registry.startUpload('verify/app');
      await registry.request('PATCH', location, { body: 'abc', headers: { 'Content-Range': '0-2' } });
      const wrong = await registry.request('PUT', `${location}?digest=${sha256('abd')}`);
      expect(wrong.status).to.equal(400);
      expect(errorCode(wrong)).to.equal('DIGEST_INVALID');
      const right = await registry.request('PUT', `${location}?digest=${sha256('abc')}`);
      expect(right.status).to.equal(201);
    });

    for (const bad of ['sha256:abc', 'md5:d41d8cd98f00b204e9800998ecf8427e', 'sha256:' + 'A'.repeat(64), 'nonsense', '../../etc/passwd']) {
      it(`a malformed digest (${bad}) answers 400 DIGEST_INVALID`, async () => {
        const res = await registry.request('POST', `/v2/verify/app/blobs/uploads/?digest=${encodeURIComponent(bad)}`, { body: 'x' });
        expect(res.status).to.equal(400);
        expect(errorCode(res)).to.equal('DIGEST_INVALID');
      });
    }

    it('a malformed digest in a blob URL answers 400 DIGEST_INVALID, not a path lookup', async () => {
      for (const bad of ['sha256:..%2f..%2fetc', 'sha256:abc', 'sha256:' + '0'.repeat(63)]) {
        const res = await registry.request('GET', `/v2/verify/app/blobs/${bad}`);
        expect(res.status, bad).to.equal(400);
        expect(errorCode(res)).to.equal('DIGEST_INVALID');
      }
    });

    it('PUT without a digest answers DIGEST_INVALID and keeps the session', async () => {
      const location = await registry.startUpload('verify/app');
      const res = await registry.request('PUT', location, { body: 'data' });
      expect(res.status).to.equal(400);
      expect(errorCode(res)).to.equal('DIGEST_INVALID');
      const status = await registry.request('GET', location);
      expect(status.status).to.equal(204);
    });

    it('a body shorter than its Content-Length stores nothing and the server keeps serving', async () => {
      const data = Buffer.alloc(1000, 7);
      const digest = sha256(data);
      await new Promise<void>((resolve, reject) => {
        const socket = connect(suite.berth.port, '127.0.0.1', () => {
          socket.write(
            `POST /v2/short/app/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n`,
          );
          socket.write(data.subarray(0, 400));
          socket.end();
        });
        socket.on('error', reject);
        socket.on('close', () => resolve());
        socket.resume();
      });
      const res = await registry.request('HEAD', `/v2/short/app/blobs/${digest}`);
      expect(res.status).to.equal(404);
      const alive = await registry.request('GET', '/v2/');
      expect(alive.status).to.equal(200);
    });
  });

  describe('cross-repository mount', () => {
    let digest: string;
    before(async () => {
      digest = await registry.pushBlob('mount/source', 'blob to mount');
    });

    it('mount=&from= answers 201 and the blob is served by the target', async () => {
      const res = await registry.request('POST', `/v2/mount/target/blobs/uploads/?mount=${digest}&from=mount/source`);
      expect(res.status).to.equal(201);
      expect(res.headers.location).to.equal(`/v2/mount/target/blobs/${digest}`);
      expect(res.headers['docker-content-digest']).to.equal(digest);
      const get = await registry.request('GET', `/v2/mount/target/blobs/${digest}`);
      expect(get.text).to.equal('blob to mount');
    });

    it('mount without from mounts from any repository that holds the blob', async () => {
      const res = await registry.request('POST', `/v2/mount/anywhere/blobs/uploads/?mount=${digest}`);
      expect(res.status).to.equal(201);
      const get = await registry.request('HEAD', `/v2/mount/anywhere/blobs/${digest}`);
      expect(get.status).to.equal(200);
    });

    it('mounting from a repository that lacks the blob falls back to an upload session (202)', async () => {
      const res = await registry.request('POST', `/v2/mount/target2/blobs/uploads/?mount=${digest}&from=mount/empty`);
      expect(res.status).to.equal(202);
      expect(res.headers.location).to.match(/^\/v2\/mount\/target2\/blobs\/uploads\/[0-9a-f-]{36}$/);
      const get = await registry.request('HEAD', `/v2/mount/target2/blobs/${digest}`);
      expect(get.status).to.equal(404);
    });

    it('mounting an unknown blob without from opens a session', async () => {
      const res = await registry.request('POST', `/v2/mount/target3/blobs/uploads/?mount=${sha256('never pushed')}`);
      expect(res.status).to.equal(202);
    });

    it('a malformed mount or from falls back to a session instead of failing', async () => {
      const res = await registry.request('POST', `/v2/mount/target4/blobs/uploads/?mount=${digest}&from=../../etc`);
      expect(res.status).to.equal(202);
    });
  });

  describe('delete', () => {
    it('DELETE unlinks the blob from the repository (202), then it is unknown there', async () => {
      const digest = await registry.pushBlob('del/a', 'delete me');
      await registry.request('POST', `/v2/del/b/blobs/uploads/?mount=${digest}&from=del/a`);
      const res = await registry.request('DELETE', `/v2/del/a/blobs/${digest}`);
      expect(res.status).to.equal(202);
      expect((await registry.request('GET', `/v2/del/a/blobs/${digest}`)).status).to.equal(404);
      // Still served where it is still linked.
      expect((await registry.request('GET', `/v2/del/b/blobs/${digest}`)).text).to.equal('delete me');
      const again = await registry.request('DELETE', `/v2/del/a/blobs/${digest}`);
      expect(again.status).to.equal(404);
      expect(errorCode(again)).to.equal('BLOB_UNKNOWN');
    });
  });
});
