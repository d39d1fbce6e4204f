// A fill followed from another process (FollowedFill), against real filesystem storage: the session's
// bytes are streamed as storage holds them, the last byte only once the blob is stored; a fill withdrawn
// without its blob, or gone silent, ends the follower's stream in an error, never with a whole body.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FollowedFill, type FillNotice } from '../../mirror/index.ts';
import { filesystemStorage, parseDigest, type BlobUpload, type Digest, type Storage } from '../../storage/index.ts';
import { waitFor } from '../helpers/wait.ts';

const digestOf = (content: Buffer): Digest => parseDigest(`sha256:${createHash('sha256').update(content).digest('hex')}`);

/** Reads a stream as it comes: the bytes so far, and how it ended. */
function follow(stream: Readable): { bytes: () => number; body: () => Buffer; ended: Promise<Error | undefined> } {
  const chunks: Buffer[] = [];
  let total = 0;
  stream.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    total += chunk.length;
  });
  const ended = new Promise<Error | undefined>((resolve) => {
    stream.once('end', () => resolve(undefined));
    stream.once('error', (err) => resolve(err));
  });
  return { bytes: () => total, body: () => Buffer.concat(chunks), ended };
}

describe('pull-through cache: a fill followed from another process', () => {
  let dir: string;
  let storage: Storage;
  let session: BlobUpload;
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const notice = (received: number, started = true): string =>
    JSON.stringify({ name: session.name, id: session.id, size: data.length, started, received } satisfies FillNotice);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-followed-fill-'));
    storage = filesystemStorage(dir);
    session = await storage.uploads.append(await storage.uploads.create('mirror/team/app'), Readable.from([data]));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('streams what storage holds but the last byte, then the rest once the blob is stored', async () => {
    const digest = digestOf(data);
    const fill = FollowedFill.from(storage, digest, notice(1024 * 1024), 30_000)!;
    await fill.started;
    expect(fill.size).to.equal(data.length);
    const reader = follow(fill.reader());
    await waitFor(() => reader.bytes() === 1024 * 1024 - 1, 'the announced bytes but the last', 5_000);
    fill.heard(notice(data.length));
    await waitFor(() => reader.bytes() === data.length - 1, 'every byte but the last', 5_000);
    await storage.uploads.complete(session, digest);
    fill.heard(undefined);
    expect(await reader.ended).to.equal(undefined);
    expect(reader.body().equals(data)).to.equal(true);
    expect(fill.state).to.equal('done');
  });

  it('ends the stream in an error when the fill is withdrawn without its blob, or another session is announced', async () => {
    for (const end of [undefined, JSON.stringify({ ...JSON.parse(notice(10)), id: '6f1c7d1e-3c41-4b7b-9a55-0f2f3d1e2a10' })]) {
      const fill = FollowedFill.from(storage, digestOf(data), notice(data.length), 30_000)!;
      const reader = follow(fill.reader());
      await waitFor(() => reader.bytes() === data.length - 1, 'every byte but the last', 5_000);
      fill.heard(end);
      expect(await reader.ended).to.be.instanceOf(Error);
      expect(reader.bytes()).to.equal(data.length - 1);
      expect(fill.state).to.equal('failed');
      await fill.finished.then(
        () => expect.fail('finished without the blob'),
        (err: Error) => expect(err.message).to.contain('without storing it'),
      );
    }
  });

  it('gives up on a filler gone silent, and ignores announcements it cannot read', async () => {
    const fill = FollowedFill.from(storage, digestOf(data), notice(100), 200)!;
    expect(FollowedFill.from(storage, digestOf(data), '{"name":1}', 200)).to.equal(undefined);
    const reader = follow(fill.reader());
    expect(await reader.ended).to.be.instanceOf(Error);
    expect(reader.bytes()).to.equal(99);
  });
});
