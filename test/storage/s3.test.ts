import { expect } from 'chai';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { isStorageFailure, PathNotFoundError, StorageUnavailableError } from '../../storage/index.ts';
import { partSizeFor, S3Driver } from '../../storage/driver/s3/index.ts';
import { sharedS3, type TestS3 } from '../helpers/s3.ts';
import { describeStorageDriver } from './driver-contract.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function prefix(name: string): string {
  return `${name}-${randomBytes(4).toString('hex')}/`;
}

describeStorageDriver('s3 (s3rver, 5 MiB parts)', async () => {
  const s3 = await sharedS3();
  const options = s3.driverOptions(prefix('contract'));
  return {
    driver: new S3Driver(options),
    reopen: () => new S3Driver(options),
    pendingUploads: async () => (await s3.pendingUploads(options.prefix!)).map((key) => `/${key.slice(options.prefix!.length)}`),
    cleanup: async () => {},
  };
});

describe('S3Driver', () => {
  let s3: TestS3;
  before(async () => {
    s3 = await sharedS3();
  });

  async function keys(under: string): Promise<string[]> {
    const res = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: under }));
    return (res.Contents ?? []).map((o) => o.Key!).sort();
  }

  it('part sizes grow with the part number so that 10,000 parts hold far more than a 500 GiB layer', () => {
    for (const first of [5 * MiB, 16 * MiB]) {
      let total = 0;
      let previous = 0;
      for (let n = 1; n <= 10_000; n++) {
        const size = partSizeFor(n, first);
        expect(size).to.be.at.least(Math.max(5 * MiB, previous));
        expect(size).to.be.at.most(5 * GiB);
        previous = size;
        total += size;
      }
      expect(total).to.be.greaterThan(2 * 1024 * GiB);
    }
    // The default: 16 MiB parts for the first 15.6 GiB, and a 500 GiB layer in about 5000 parts.
    expect(partSizeFor(1)).to.equal(16 * MiB);
    let bytes = 0;
    let parts = 0;
    while (bytes < 500 * GiB) bytes += partSizeFor(++parts);
    expect(parts).to.be.below(5100);
  });

  it('keeps every key under its prefix; writer state lives in S3 next to the path, hidden from list', async () => {
    const options = s3.driverOptions(prefix('keys'));
    const driver = new S3Driver(options);
    await driver.putContent('/a/b', 'x');
    const writer = await driver.writer('/a/upload/data', false);
    await writer.write(Readable.from([Buffer.alloc(6 * MiB, 1)]));
    await writer.close();
    const stored = await keys(options.prefix!);
    expect(stored.every((k) => k.startsWith(options.prefix!))).to.equal(true);
    const sidecar = stored.find((k) => k.endsWith('/a/upload/.data@writer'));
    expect(sidecar, stored.join('\n')).to.be.a('string');
    const state = JSON.parse(
      await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: sidecar! }))).Body!.transformToString(),
    ) as { uploadId?: string; parts: { n: number; size: number; etag: string }[]; tail: { length: number }[]; size: number };
    expect(state.uploadId).to.be.a('string');
    expect(state.parts.map((p) => [p.n, p.size])).to.deep.equal([[1, 5 * MiB]]);
    expect(state.tail.reduce((sum, piece) => sum + piece.length, 0)).to.equal(MiB);
    expect(state.size).to.equal(6 * MiB);
    expect(await driver.list('/a/upload')).to.deep.equal(['/a/upload/data']);
    expect(await driver.list('/a')).to.deep.equal(['/a/b', '/a/upload']);
    expect(await driver.delete('/a')).to.equal(true);
    expect(await keys(options.prefix!)).to.deep.equal([]);
    expect(await s3.pendingUploads(options.prefix!)).to.deep.equal([]);
  });

  function bytes(size: number, seed: number): Buffer {
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 11 + seed) % 253;
    return data;
  }

  async function write(driver: S3Driver, path: string, data: Buffer): Promise<number> {
    const writer = await driver.writer(path, true);
    try {
      await writer.write(Readable.from((function* () { for (let i = 0; i < data.length; i += 256 * 1024) yield data.subarray(i, i + 256 * 1024); })()));
      return writer.size;
    } finally {
      await writer.close();
    }
  }

  it('a part upload that fails is sent again, read anew from the disk spool', async () => {
    const driver = new S3Driver(s3.driverOptions(prefix('retry')));
    const data = bytes(11 * MiB + 99, 1);
    s3.failUploadParts(2);
    expect(await write(driver, '/up/data', data)).to.equal(data.length);
    const writer = await driver.writer('/up/data', true);
    await writer.commit();
    await writer.close();
    expect((await driver.getContent('/up/data'))!.equals(data)).to.equal(true);
  });

  it('a write whose parts cannot be uploaded fails whole: state as before, no multipart upload left', async () => {
    const options = s3.driverOptions(prefix('broken'));
    const driver = new S3Driver(options);
    expect(await write(driver, '/up/data', Buffer.from('abc'))).to.equal(3);
    s3.failUploadParts(1000);
    let error: unknown;
    try {
      await write(driver, '/up/data', bytes(11 * MiB, 2));
    } catch (err) {
      error = err;
    } finally {
      s3.failUploadParts(0);
    }
    // S3's answer, in storage's own words (the server tells clients to try again), with S3's reason kept.
    expect(error).to.be.instanceOf(StorageUnavailableError);
    expect(((error as Error).cause as Error)?.name).to.equal('InternalError');
    expect((await driver.stat('/up/data'))!.size).to.equal(3);
    expect(await s3.pendingUploads(options.prefix!)).to.deep.equal([]);
    const rest = bytes(6 * MiB, 3);
    expect(await write(driver, '/up/data', rest)).to.equal(3 + rest.length);
    const writer = await driver.writer('/up/data', true);
    await writer.commit();
    await writer.close();
    expect((await driver.getContent('/up/data'))!.equals(Buffer.concat([Buffer.from('abc'), rest]))).to.equal(true);
  });

  it('list reads every page', async () => {
    const options = { ...s3.driverOptions(prefix('pages')), listPageSize: 2 };
    const driver = new S3Driver(options);
    const names = ['e', 'a', 'c', 'b', 'd'];
    for (const name of names) await driver.putContent(`/dir/${name}`, name);
    await driver.putContent('/dir/f/deep', 'x');
    expect(await driver.list('/dir')).to.deep.equal(['/dir/a', '/dir/b', '/dir/c', '/dir/d', '/dir/e', '/dir/f']);
    expect(await driver.delete('/dir')).to.equal(true);
    expect(await driver.list('/dir')).to.deep.equal([]);
  });

  it('moves an object above the copy threshold with a multipart copy', async () => {
    const driver = new S3Driver({ ...s3.driverOptions(prefix('copy')), copyThreshold: 6 * MiB, copyPartSize: 5 * MiB });
    const data = Buffer.alloc(13 * MiB + 17);
    for (let i = 0; i < data.length; i++) data[i] = i % 241;
    await driver.putContent('/from/data', data);
    await driver.move('/from/data', '/to/data');
    expect((await driver.getContent('/to/data'))!.equals(data)).to.equal(true);
    expect(await driver.stat('/from/data')).to.equal(undefined);
  });

  it('redirectURL presigns a GET that serves the object, or a Range of it, to a caller without credentials', async () => {
    const options = s3.driverOptions(prefix('presign'));
    const driver = new S3Driver(options);
    // Written as a client's chunks are: through a writer, so the object is a completed multipart upload.
    const data = Buffer.alloc(6 * MiB + 5);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const writer = await driver.writer('/blobs/x/data', false);
    await writer.write(Readable.from([data]));
    await writer.commit();
    await writer.close();

    const url = (await driver.redirectURL('/blobs/x/data', { expiresInSeconds: 120 }))!;
    expect(url.startsWith(`${s3.endpoint}/${s3.bucket}/${options.prefix}blobs/x/data?`), url).to.equal(true);
    const query = new URL(url).searchParams;
    expect(query.get('X-Amz-Expires')).to.equal('120');
    expect(query.get('X-Amz-SignedHeaders')).to.equal('host');

    const whole = await fetch(url);
    expect(whole.status).to.equal(200);
    expect(whole.headers.get('content-type')).to.equal('application/octet-stream');
    expect(Buffer.from(await whole.arrayBuffer()).equals(data)).to.equal(true);
    const part = await fetch(url, { headers: { Range: 'bytes=5242878-5242885' } });
    expect(part.status).to.equal(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(data.subarray(5242878, 5242886))).to.equal(true);

    // The signature is what grants the read: another key under the same signature is refused.
    const forged = new URL(url);
    forged.pathname = forged.pathname.replace('/blobs/x/data', '/blobs/y/data');
    await driver.putContent('/blobs/y/data', 'not for you');
    const refused = await fetch(forged);
    expect(refused.status).to.equal(403);
    expect(await refused.text()).to.include('SignatureDoesNotMatch');
    // And without one, nothing is read (the bucket is private).
    const unsigned = await fetch(url.split('?')[0]!);
    expect(unsigned.status).to.equal(403);
    expect(await unsigned.text()).to.include('AccessDenied');
    expect(await driver.redirectURL('/', { expiresInSeconds: 120 })).to.equal(undefined);
  });

  it('ready() names the bucket and the reason when the bucket is missing or the endpoint does not answer', async () => {
    const missing = new S3Driver({ ...s3.driverOptions('x/'), bucket: 'no-such-bucket' });
    let error: unknown;
    try {
      await missing.ready();
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(StorageUnavailableError);
    expect((error as Error).message).to.include('"no-such-bucket"').and.include('does not exist');

    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    error = undefined;
    try {
      await new S3Driver({ ...s3.driverOptions('x/'), endpoint: `http://127.0.0.1:${closed}` }).ready();
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(StorageUnavailableError);
    expect((error as Error).message).to.include(`http://127.0.0.1:${closed}`).and.include('ECONNREFUSED');
    await new S3Driver(s3.driverOptions('x/')).ready();
  });

  it("S3's failures leave the driver in storage's own words: StorageUnavailableError with the SDK's error as its cause", async () => {
    const failure = async (run: () => Promise<unknown>): Promise<unknown> => {
      try {
        await run();
      } catch (err) {
        return err;
      }
      return 'no failure';
    };
    // A bucket that does not exist answers 404, and that is no missing object: the storage is unusable.
    const missing = new S3Driver({ ...s3.driverOptions('x/'), bucket: 'no-such-bucket' });
    for (const run of [() => missing.getContent('/a'), () => missing.reader('/a'), () => missing.putContent('/a', 'x'), () => missing.list('/')]) {
      const error = await failure(run);
      expect(error).to.be.instanceOf(StorageUnavailableError);
      expect(isStorageFailure(error)).to.equal(true);
      expect(((error as Error).cause as Error).name).to.equal('NoSuchBucket');
    }
    await missing.close();
    // The storage contract reads no SDK's fields: only storage's own error says that storage failed.
    expect(isStorageFailure(Object.assign(new Error('from some SDK'), { $metadata: { httpStatusCode: 503 } }))).to.equal(false);
    // A missing object in a bucket that exists is absence, as on every driver.
    const driver = new S3Driver(s3.driverOptions(prefix('absent')));
    expect(await driver.getContent('/nothing/here')).to.equal(undefined);
    expect(await failure(() => driver.reader('/nothing/here'))).to.be.instanceOf(PathNotFoundError);
  });

  it('the test endpoint is as strict as S3 about multipart uploads (or these tests would prove little)', async () => {
    const key = `${prefix('strict')}object`;
    const refused = async (send: () => Promise<unknown>) => {
      try {
        await send();
      } catch (err) {
        return (err as Error).name;
      }
      return 'accepted';
    };
    const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
    const part = (n: number, size: number) =>
      s3.client.send(new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId, PartNumber: n, Body: Buffer.alloc(size, n) }));
    const one = await part(1, 1024);
    const two = await part(2, 1024);
    const complete = (parts: { PartNumber: number; ETag?: string }[]) =>
      s3.client.send(new CompleteMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
    expect(await refused(() => complete([{ PartNumber: 1, ETag: one.ETag }, { PartNumber: 2, ETag: two.ETag }]))).to.equal('EntityTooSmall');
    expect(await refused(() => complete([{ PartNumber: 1, ETag: two.ETag }]))).to.equal('InvalidPart');
    expect(await s3.pendingUploads(key)).to.deep.equal([key]);
    await s3.client.send(new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId }));
    expect(await s3.pendingUploads(key)).to.deep.equal([]);
    expect(await refused(() => part(3, 10))).to.equal('NoSuchUpload');
  });
});
