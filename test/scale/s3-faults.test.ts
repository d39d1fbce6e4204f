import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { errorCode, Registry, sha256 } from '../helpers/registry.ts';
import { sharedS3 } from '../helpers/s3.ts';

describe('Berth on S3 when S3 fails or stalls (a fault-injecting proxy in front of s3rver)', () => {
  let proxy: FaultProxy;
  let berth: TestBerth;
  let registry: Registry;

  before(async () => {
    const s3 = await sharedS3();
    proxy = await startFaultProxy(s3.endpoint);
    berth = await startBerth({
      env: {
        ...s3.berthEnv(`faults-${Date.now()}/`),
        BERTH_S3_ENDPOINT: proxy.url,
        BERTH_S3_REQUEST_TIMEOUT_MS: '1500',
      },
    });
    registry = new Registry(berth.url);
  });
  afterEach(() => {
    proxy.rules.length = 0;
  });
  after(async () => {
    await berth?.destroy();
    await proxy?.close();
  });

  const isObjectGet = (method: string, url: string) => method === 'GET' && !url.includes('list-type') && !url.includes('uploads');
  const isPartUpload = (method: string, url: string) => method === 'PUT' && url.includes('partNumber=');

  function blobOf(size: number, seed: number): Buffer {
    const blob = Buffer.alloc(size);
    for (let i = 0; i < size; i++) blob[i] = (i * seed + 7) % 256;
    return blob;
  }

  it('answers from S3 that fail twice with 503 are retried: a pull succeeds, byte-exact', async () => {
    const blob = blobOf(300_000, 3);
    const digest = await registry.pushBlob('faults/app', blob);
    proxy.rules.push({ match: isObjectGet, fault: { status: 503, code: 'SlowDown' }, remaining: 2 });
    const res = await registry.request('GET', `/v2/faults/app/blobs/${digest}`);
    expect(res.status).to.equal(200);
    expect(sha256(res.body)).to.equal(digest);
    expect(proxy.rules[0]!.remaining, 'both faults were hit').to.equal(0);
  });

  it('a read that stalls is timed out and retried', async () => {
    const blob = blobOf(200_000, 5);
    const digest = await registry.pushBlob('faults/app', blob);
    proxy.rules.push({ match: isObjectGet, fault: 'stall', remaining: 1 });
    const started = Date.now();
    const res = await registry.request('GET', `/v2/faults/app/blobs/${digest}`);
    expect(res.status).to.equal(200);
    expect(sha256(res.body)).to.equal(digest);
    expect(proxy.rules[0]!.remaining).to.equal(0);
    expect(Date.now() - started).to.be.below(15_000);
  });

  it('failed part uploads are retried; the blob that lands is exact', async () => {
    const blob = blobOf(11 * 1024 * 1024 + 17, 11);
    proxy.rules.push({ match: isPartUpload, fault: { status: 500, code: 'InternalError' }, remaining: 2 });
    const location = await registry.startUpload('faults/parts');
    const patch = await registry.request('PATCH', location, { body: blob, headers: { 'Content-Range': `0-${blob.length - 1}` } });
    expect(patch.status, patch.text).to.equal(202);
    const put = await registry.request('PUT', `${location}?digest=${sha256(blob)}`);
    expect(put.status, put.text).to.equal(201);
    expect(proxy.rules[0]!.remaining).to.equal(0);
    const back = await registry.request('GET', `/v2/faults/parts/blobs/${sha256(blob)}`);
    expect(sha256(back.body)).to.equal(sha256(blob));
  });

  it('a store that keeps failing gets a clear 503 with Retry-After, and nothing becomes visible', async () => {
    const blob = blobOf(100_000, 13);
    const digest = sha256(blob);
    proxy.rules.push({ match: (method) => method === 'PUT' || method === 'POST', fault: { status: 500, code: 'InternalError' }, remaining: 1000 });
    const res = await registry.request('POST', `/v2/faults/down/blobs/uploads/?digest=${digest}`, { body: blob });
    expect(res.status).to.equal(503);
    expect(errorCode(res)).to.equal('UNAVAILABLE');
    expect(res.headers['retry-after']).to.equal('5');
    proxy.rules.length = 0;
    expect((await registry.request('HEAD', `/v2/faults/down/blobs/${digest}`)).status, 'nothing half-visible').to.equal(404);
    const again = await registry.request('POST', `/v2/faults/down/blobs/uploads/?digest=${digest}`, { body: blob });
    expect(again.status, again.text).to.equal(201);
    expect(sha256((await registry.request('GET', `/v2/faults/down/blobs/${digest}`)).body)).to.equal(digest);
  });
});
