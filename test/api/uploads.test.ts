import { expect } from 'chai';
import { connect } from 'node:net';
import { useBerth, startBerth } from '../helpers/berth.ts';
import { errorCode, Registry, sha256 } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

describe('chunked uploads', () => {
  const suite = useBerth();
  const registry = suite.registry;

  it('POST opens a session: 202, an unguessable Location, Range 0-0, empty body', async () => {
    const res = await registry.request('POST', '/v2/chunk/app/blobs/uploads/');
    expect(res.status).to.equal(202);
    expect(res.headers.location).to.match(/^\/v2\/chunk\/app\/blobs\/uploads\/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(res.headers.range).to.equal('0-0');
    expect(res.headers['docker-upload-uuid']).to.equal(res.headers.location!.split('/').pop());
    expect(res.headers['content-length']).to.equal('0');
    expect(res.body.length).to.equal(0);
    expect(res.headers['oci-chunk-min-length']).to.equal(undefined);
    const other = await registry.request('POST', '/v2/chunk/app/blobs/uploads/');
    expect(other.headers.location).to.not.equal(res.headers.location);
  });

  it('PATCH chunks in order with Content-Range, GET reports progress, PUT finishes', async () => {
    const blob = Buffer.from('The quick brown fox jumps over the lazy dog');
    const location = await registry.startUpload('chunk/app');
    const first = await registry.request('PATCH', location, { body: blob.subarray(0, 10), headers: { 'Content-Range': '0-9' } });
    expect(first.status).to.equal(202);
    expect(first.headers.range).to.equal('0-9');
    expect(first.headers.location).to.equal(location);
    expect(first.body.length).to.equal(0);
    const status = await registry.request('GET', location);
    expect(status.status).to.equal(204);
    expect(status.headers.range).to.equal('0-9');
    expect(status.headers.location).to.equal(location);
    const second = await registry.request('PATCH', location, { body: blob.subarray(10, 30), headers: { 'Content-Range': '10-29' } });
    expect(second.headers.range).to.equal('0-29');
    // The last chunk travels in the PUT body.
    const put = await registry.request('PUT', `${location}?digest=${sha256(blob)}`, {
      body: blob.subarray(30),
      headers: { 'Content-Range': `30-${blob.length - 1}` },
    });
    expect(put.status, put.text).to.equal(201);
    expect(put.headers['docker-content-digest']).to.equal(sha256(blob));
    const get = await registry.request('GET', `/v2/chunk/app/blobs/${sha256(blob)}`);
    expect(get.body.equals(blob)).to.equal(true);
    const after = await registry.request('GET', location);
    expect(after.status).to.equal(404);
    expect(errorCode(after)).to.equal('BLOB_UPLOAD_UNKNOWN');
  });

  it('PATCH without Content-Range streams the body onto the end', async () => {
    const location = await registry.startUpload('chunk/app');
    await registry.request('PATCH', location, { body: 'streamed-' });
    const second = await registry.request('PATCH', location, { body: 'upload' });
    expect(second.headers.range).to.equal('0-14');
    const put = await registry.request('PUT', `${location}?digest=${sha256('streamed-upload')}`);
    expect(put.status).to.equal(201);
  });

  it('a chunk that does not start at the current offset is refused with 416 and the current Range', async () => {
    const location = await registry.startUpload('chunk/app');
    await registry.request('PATCH', location, { body: '12345', headers: { 'Content-Range': '0-4' } });
    for (const range of ['10-14', '0-4', '3-7']) {
      const res = await registry.request('PATCH', location, { body: 'abcde', headers: { 'Content-Range': range } });
      expect(res.status, range).to.equal(416);
      expect(res.headers.range).to.equal('0-4');
      expect(res.headers.location).to.equal(location);
      expect(errorCode(res)).to.equal('BLOB_UPLOAD_INVALID');
    }
    const status = await registry.request('GET', location);
    expect(status.headers.range, 'nothing was appended').to.equal('0-4');
  });

  it('a malformed Content-Range, or one that contradicts Content-Length, is a 416', async () => {
    const location = await registry.startUpload('chunk/app');
    for (const range of ['bytes', 'five-ten', '4-2']) {
      const res = await registry.request('PATCH', location, { body: 'abc', headers: { 'Content-Range': range } });
      expect(res.status, range).to.equal(416);
    }
    const mismatch = await registry.request('PATCH', location, { body: 'abc', headers: { 'Content-Range': '0-9' } });
    expect(mismatch.status).to.equal(416);
    expect((await registry.request('GET', location)).headers.range).to.equal('0-0');
  });

  it('DELETE cancels the session, after which it is unknown', async () => {
    const location = await registry.startUpload('chunk/app');
    await registry.request('PATCH', location, { body: 'abc' });
    const del = await registry.request('DELETE', location);
    expect(del.status).to.equal(204);
    for (const method of ['GET', 'PATCH', 'DELETE']) {
      const res = await registry.request(method, location, method === 'PATCH' ? { body: 'x' } : {});
      expect(res.status, method).to.equal(404);
      expect(errorCode(res)).to.equal('BLOB_UPLOAD_UNKNOWN');
    }
    const put = await registry.request('PUT', `${location}?digest=${sha256('abc')}`);
    expect(put.status).to.equal(404);
  });

  it('a session belongs to its repository', async () => {
    const location = await registry.startUpload('chunk/app');
    const res = await registry.request('GET', location.replace('/chunk/app/', '/chunk/other/'));
    expect(res.status).to.equal(404);
    expect(errorCode(res)).to.equal('BLOB_UPLOAD_UNKNOWN');
  });

  it('malformed or traversing upload ids are BLOB_UPLOAD_UNKNOWN', async () => {
    for (const id of ['not-a-uuid', '..%2F..%2Fetc', '..%5C..', 'abc.def', '00000000-0000-4000-8000-000000000000']) {
      const res = await registry.request('PATCH', `/v2/chunk/app/blobs/uploads/${id}`, { body: 'x' });
      expect(res.status, id).to.equal(404);
      expect(errorCode(res)).to.equal('BLOB_UPLOAD_UNKNOWN');
    }
  });

  it('an interrupted chunk is rolled back: the offset stays where the last whole chunk ended', async () => {
    const location = await registry.startUpload('chunk/app');
    await registry.request('PATCH', location, { body: 'whole', headers: { 'Content-Range': '0-4' } });
    await new Promise<void>((resolve, reject) => {
      const socket = connect(suite.berth.port, '127.0.0.1', () => {
        socket.write(`PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nContent-Range: 5-104\r\n\r\n`);
        socket.write('only-part-of-it');
        // Give the server the partial chunk, then drop the connection.
        setImmediate(() => socket.destroy());
      });
      socket.on('error', reject);
      socket.on('close', () => resolve());
    });
    // The server notices the abort asynchronously: poll until the session is no longer busy.
    let range = '';
    for (let i = 0; i < 50; i++) {
      range = (await registry.request('GET', location)).headers.range!;
      const next = await registry.request('PATCH', location, { body: '-more', headers: { 'Content-Range': '5-9' } });
      if (next.status === 202) break;
    }
    expect(range).to.equal('0-4');
    const put = await registry.request('PUT', `${location}?digest=${sha256('whole-more')}`);
    expect(put.status, put.text).to.equal(201);
  });

  it('concurrent chunks on one session are serialised: exactly one lands at each offset', async () => {
    const location = await registry.startUpload('chunk/app');
    const results = await Promise.all(
      ['aaaa', 'bbbb', 'cccc'].map((body) => registry.request('PATCH', location, { body, headers: { 'Content-Range': '0-3' } })),
    );
    expect(results.filter((r) => r.status === 202)).to.have.length(1);
    expect(results.filter((r) => r.status === 416)).to.have.length(2);
    expect((await registry.request('GET', location)).headers.range).to.equal('0-3');
  });
});

describe('upload options: chunk minimum, absolute Location, concurrency limit, read-only, delete disabled', () => {
  it('announces OCI-Chunk-Min-Length and writes absolute Locations when configured', async () => {
    const berth = await startBerth({ env: { BERTH_CHUNK_MIN_LENGTH: '5242880', BERTH_PUBLIC_URL: 'https://registry.example.com' } });
    try {
      const registry = new Registry(berth.url);
      const res = await registry.request('POST', '/v2/opt/app/blobs/uploads/');
      expect(res.headers['oci-chunk-min-length']).to.equal('5242880');
      expect(res.headers.location).to.match(/^https:\/\/registry\.example\.com\/v2\/opt\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);
      const blob = await registry.request('POST', `/v2/opt/app/blobs/uploads/?digest=${sha256('x')}`, { body: 'x' });
      expect(blob.headers.location).to.equal(`https://registry.example.com/v2/opt/app/blobs/${sha256('x')}`);
    } finally {
      await berth.destroy();
    }
  });

  it('answers TOO_MANY_REQUESTS with Retry-After beyond the concurrent upload limit', async () => {
    const berth = await startBerth({ env: { BERTH_MAX_CONCURRENT_UPLOADS: '1' } });
    const socket = connect(berth.port, '127.0.0.1');
    try {
      const registry = new Registry(berth.url);
      const location = await registry.startUpload('limit/app');
      // One upload holds the only slot: its body is announced but not yet sent.
      await new Promise<void>((resolve) => {
        socket.write(`PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc`, () => resolve());
      });
      // Synchronised on the server's own count, not on how many requests slip in before the PATCH starts.
      await waitFor(async () => (await registry.request('GET', '/metrics')).text.includes('berth_uploads_in_progress 1'), 'the PATCH to hold the upload slot');
      const res = await registry.request('POST', `/v2/limit/app/blobs/uploads/?digest=${sha256('y')}`, { body: 'y' });
      expect(res.status).to.equal(429);
      expect(errorCode(res)).to.equal('TOO_MANY_REQUESTS');
      expect(res.headers['retry-after']).to.equal('1');
      const done = new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (c) => {
          text += c.toString();
          if (text.includes('\r\n\r\n')) resolve(text);
        });
      });
      socket.write('defghij');
      expect(await done).to.match(/^HTTP\/1\.1 202/);
      const after = await registry.request('POST', `/v2/limit/app/blobs/uploads/?digest=${sha256('y')}`, { body: 'y' });
      expect(after.status).to.equal(201);
    } finally {
      socket.destroy();
      await berth.destroy();
    }
  });

  it('read-only mode refuses writes with DENIED and still serves reads', async () => {
    const berth = await startBerth();
    const registry = new Registry(berth.url);
    const digest = await registry.pushBlob('ro/app', 'kept');
    await berth.stop();
    const readOnly = await startBerth({ dataDir: berth.dataDir, env: { BERTH_READ_ONLY: 'true' } });
    try {
      const ro = new Registry(readOnly.url);
      for (const [method, path] of [
        ['POST', '/v2/ro/app/blobs/uploads/'],
        ['PUT', '/v2/ro/app/manifests/latest'],
        ['DELETE', `/v2/ro/app/blobs/${digest}`],
      ] as const) {
        const res = await ro.request(method, path, { body: '{}' });
        expect(res.status, method).to.equal(403);
        expect(errorCode(res)).to.equal('DENIED');
      }
      expect((await ro.request('GET', `/v2/ro/app/blobs/${digest}`)).text).to.equal('kept');
    } finally {
      await readOnly.destroy();
      await berth.destroy();
    }
  });

  it('with deletion disabled, DELETE of manifests and blobs is UNSUPPORTED (405)', async () => {
    const berth = await startBerth({ env: { BERTH_DELETE_ENABLED: 'false' } });
    try {
      const registry = new Registry(berth.url);
      const image = await registry.pushImage('nodel/app', 'v1');
      for (const path of [`/v2/nodel/app/manifests/${image.digest}`, '/v2/nodel/app/manifests/v1', `/v2/nodel/app/blobs/${image.layers[0]}`]) {
        const res = await registry.request('DELETE', path);
        expect(res.status, path).to.equal(405);
        expect(errorCode(res)).to.equal('UNSUPPORTED');
      }
      expect((await registry.request('GET', '/v2/nodel/app/manifests/v1')).status).to.equal(200);
      // Cancelling one's own upload is not a deletion of content.
      const location = await registry.startUpload('nodel/app');
      expect((await registry.request('DELETE', location)).status).to.equal(204);
    } finally {
      await berth.destroy();
    }
  });
});
