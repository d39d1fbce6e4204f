// Blob GETs answered with 307 to a presigned S3 URL (BERTH_S3_REDIRECT): Berth processes on s3rver, whose
// presigned URLs are checked here as S3 checks them (test/helpers/s3.ts: signature over method, path,
// query and host; expiry; no unsigned reads). The bytes come from S3, not from Berth; the access check
// stays Berth's.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { AuthorizedRegistry, addUser, bearer, cli, tokenFor } from './helpers/auth.ts';
import { startBerth, type TestBerth } from './helpers/berth.ts';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.ts';
import { pseudoRandomBytes } from './helpers/oci-layout.ts';
import { errorCode, Registry, sha256, type RawResponse } from './helpers/registry.ts';
import { sharedS3, type TestS3 } from './helpers/s3.ts';
import { waitFor } from './helpers/wait.ts';

function uniquePrefix(name: string): string {
  return `${name}-${randomBytes(4).toString('hex')}/`;
}

/** The redirect Berth answered: a 307 with nothing but headers, pointing elsewhere. */
function expectRedirect(res: RawResponse, digest: string): string {
  expect(res.status, res.text).to.equal(307);
  expect(res.headers['docker-content-digest']).to.equal(digest);
  expect(res.headers['cache-control']).to.equal('no-store');
  expect(res.headers['content-length']).to.equal('0');
  expect(res.body.length).to.equal(0);
  return res.headers.location!;
}

async function bytesOf(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}

describe('blob redirects to presigned S3 URLs (Berth on s3rver, BERTH_S3_REDIRECT)', function () {
  this.timeout(60_000);
  let s3: TestS3;
  before(async () => {
    s3 = await sharedS3();
  });

  describe('on, in public-index mode', function () {
    let berth: TestBerth;
    let registry: Registry;
    let prefix: string;
    // Over 5 MiB: stored as a multipart upload, as a real layer is.
    const layer = pseudoRandomBytes('redirected layer', 6 * 1024 * 1024 + 123);
    const digest = sha256(layer);
    let secretLayer: string;
    /** An anonymous pull token for alice/app, as docker gets one for a public repository. */
    let pullToken: string;
    let anonymous: AuthorizedRegistry;
    const alice: [string, string] = ['alice', 'alice-password-1'];
    const bob: [string, string] = ['bob', 'bob-password-1'];

    before(async function () {
      prefix = uniquePrefix('redirect');
      berth = await startBerth({ env: { ...s3.berthEnv(prefix), BERTH_MODE: 'public-index', BERTH_S3_REDIRECT: 'true' } });
      registry = new Registry(berth.url);
      await addUser(berth, ...alice);
      await addUser(berth, ...bob);
      const owner = new AuthorizedRegistry(
        berth.url,
        bearer(await tokenFor(registry, ['repository:alice/app:pull,push', 'repository:alice/secret:pull,push'], alice)),
      );
      await owner.pushBlob('alice/app', layer);
      secretLayer = (await owner.pushImage('alice/secret', 'v1', { layers: ['private layer bytes'] })).layers[0]!;
      await cli(berth, ['repo', 'visibility', 'alice/secret', 'private']);
      pullToken = await tokenFor(registry, ['repository:alice/app:pull']);
      anonymous = new AuthorizedRegistry(berth.url, bearer(pullToken));
    });

    after(() => berth?.destroy());

    it('answers GET with 307 to a path-style URL on the S3 endpoint that serves exactly the blob', async function () {
      const location = expectRedirect(await anonymous.request('GET', `/v2/alice/app/blobs/${digest}`), digest);
      expect(location.startsWith(`${s3.endpoint}/${s3.bucket}/${prefix}blobs/sha256/`), location).to.equal(true);
      expect(new URL(location).searchParams.get('X-Amz-Expires')).to.equal('300');
      const res = await fetch(location);
      expect(res.status).to.equal(200);
      const body = await bytesOf(res);
      expect(body.length).to.equal(layer.length);
      expect(sha256(body)).to.equal(digest);
    });

    it('is followed by a client with the Range it asked for, and S3 answers the range', async function () {
      // Berth redirects without reading the Range; what the client asks of S3 is what it gets.
      const ranged = await anonymous.request('GET', `/v2/alice/app/blobs/${digest}`, { headers: { Range: 'bytes=5242870-5242889' } });
      const location = expectRedirect(ranged, digest);
      for (const [range, start, end] of [
        ['bytes=5242870-5242889', 5242870, 5242889],
        // What a client resuming a download sends. (Not a suffix range: s3rver gets bytes=-N wrong.)
        [`bytes=${layer.length - 100}-`, layer.length - 100, layer.length - 1],
      ] as const) {
        // fetch follows the 307 itself, Range included (and, across origins, without the Authorization).
        const res = await fetch(`${berth.url}/v2/alice/app/blobs/${digest}`, { headers: { Range: range, ...bearer(pullToken) } });
        expect(res.redirected, range).to.equal(true);
        expect(res.url.startsWith(s3.endpoint), res.url).to.equal(true);
        expect(res.status, range).to.equal(206);
        expect(res.headers.get('content-range')).to.equal(`bytes ${start}-${end}/${layer.length}`);
        expect((await bytesOf(res)).equals(layer.subarray(start, end + 1)), range).to.equal(true);
      }
      expect((await fetch(location, { headers: { Range: 'bytes=0-9' } })).status).to.equal(206);
      // A client that carried its registry token along would be refused, by S3 as by s3rver.
      const twoAuths = await fetch(location, { headers: bearer(pullToken) });
      expect(twoAuths.status).to.equal(400);
      expect(await twoAuths.text()).to.include('Only one auth mechanism allowed');
    });

    it('answers HEAD itself, as before: 200 with the size, the digest and the ETag', async function () {
      const res = await anonymous.request('HEAD', `/v2/alice/app/blobs/${digest}`);
      expect(res.status).to.equal(200);
      expect(res.headers['content-length']).to.equal(String(layer.length));
      expect(res.headers['docker-content-digest']).to.equal(digest);
      expect(res.headers.etag).to.equal(`"${digest}"`);
      expect(res.headers.location).to.equal(undefined);
    });

    it('redirects only for a blob linked in the repository: stored elsewhere or nowhere is BLOB_UNKNOWN', async function () {
      const elsewhere = await anonymous.request('GET', `/v2/alice/app/blobs/${secretLayer}`);
      expect(elsewhere.status).to.equal(404);
      expect(errorCode(elsewhere)).to.equal('BLOB_UNKNOWN');
      expect(elsewhere.headers.location).to.equal(undefined);
      const nowhere = await anonymous.request('GET', `/v2/alice/app/blobs/${sha256('never pushed')}`);
      expect(nowhere.status).to.equal(404);
      expect(nowhere.headers.location).to.equal(undefined);
    });

    it('gives a private blob\'s URL only to a caller who may pull it', async function () {
      const path = `/v2/alice/secret/blobs/${secretLayer}`;
      const strangers = [
        registry,
        new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/secret:pull']))),
        new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/secret:pull'], bob))),
      ];
      for (const stranger of strangers) {
        const res = await stranger.request('GET', path);
        expect(res.status).to.be.oneOf([401, 404]);
        expect(res.headers.location).to.equal(undefined);
        expect(res.text).to.not.include('X-Amz');
      }
      const owner = new AuthorizedRegistry(berth.url, bearer(await tokenFor(registry, ['repository:alice/secret:pull'], alice)));
      const location = expectRedirect(await owner.request('GET', path), secretLayer);
      expect((await bytesOf(await fetch(location))).toString()).to.equal('private layer bytes');
    });
  });

  describe('with a 1-second lifetime', function () {
    let berth: TestBerth;
    before(async function () {
      berth = await startBerth({ env: { ...s3.berthEnv(uniquePrefix('redirect-ttl')), BERTH_S3_REDIRECT: 'true', BERTH_S3_REDIRECT_TTL_SECONDS: '1' } });
    });
    after(() => berth?.destroy());

    it('hands out URLs that S3 refuses once they have expired', async function () {
      const registry = new Registry(berth.url);
      const digest = await registry.pushBlob('ttl/app', 'short-lived');
      const location = expectRedirect(await registry.request('GET', `/v2/ttl/app/blobs/${digest}`), digest);
      const query = new URL(location).searchParams;
      expect(query.get('X-Amz-Expires')).to.equal('1');
      const signedAt = Date.parse(query.get('X-Amz-Date')!.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'));
      // Until S3 refuses it, the URL serves the blob; the refusal must come, and only after the lifetime.
      const refused = await waitFor(async () => {
        const res = await fetch(location);
        if (res.status === 200) {
          expect((await bytesOf(res)).toString()).to.equal('short-lived');
          return undefined;
        }
        return { status: res.status, body: await res.text(), at: Date.now() };
      }, 'S3 to refuse the expired URL', 10_000);
      expect(refused.status).to.equal(403);
      expect(refused.body).to.include('AccessDenied').and.include('Request has expired');
      expect(refused.at).to.be.at.least(signedAt + 1000);
      // A new GET is a new URL.
      const again = expectRedirect(await registry.request('GET', `/v2/ttl/app/blobs/${digest}`), digest);
      expect(new URL(again).searchParams.get('X-Amz-Date')).to.not.equal(query.get('X-Amz-Date'));
    });
  });

  describe('onto a CDN base URL', function () {
    let berth: TestBerth;
    let cdn: FaultProxy;
    before(async function () {
      cdn = await startFaultProxy(s3.endpoint, { originHost: true });
      berth = await startBerth({
        env: { ...s3.berthEnv(uniquePrefix('redirect-cdn')), BERTH_S3_REDIRECT: 'true', BERTH_S3_REDIRECT_BASE_URL: cdn.url },
      });
    });
    after(async () => {
      await berth?.destroy();
      await cdn?.close();
    });

    it('keeps the presigned path and query on the CDN\'s scheme and host, and the bytes come through it', async function () {
      const registry = new Registry(berth.url);
      const blob = pseudoRandomBytes('through the cdn', 70_000);
      const digest = await registry.pushBlob('cdn/app', blob);
      const location = expectRedirect(await registry.request('GET', `/v2/cdn/app/blobs/${digest}`), digest);
      expect(location.startsWith(`${cdn.url}/${s3.bucket}/`), location).to.equal(true);
      const res = await fetch(location);
      expect(res.status).to.equal(200);
      expect(sha256(await bytesOf(res))).to.equal(digest);
      const viaCdn = cdn.requests.filter((r) => r.method === 'GET' && r.url === location.slice(cdn.url.length));
      expect(viaCdn).to.have.length(1);
    });
  });

  describe('off (the default)', function () {
    let berth: TestBerth;
    before(async function () {
      berth = await startBerth({ env: s3.berthEnv(uniquePrefix('redirect-off')) });
    });
    after(() => berth?.destroy());

    it('serves the bytes itself, whole and by Range', async function () {
      const registry = new Registry(berth.url);
      const blob = pseudoRandomBytes('served by berth', 50_000);
      const digest = await registry.pushBlob('off/app', blob);
      const whole = await registry.request('GET', `/v2/off/app/blobs/${digest}`);
      expect(whole.status).to.equal(200);
      expect(whole.headers.location).to.equal(undefined);
      expect(sha256(whole.body)).to.equal(digest);
      const part = await registry.request('GET', `/v2/off/app/blobs/${digest}`, { headers: { Range: 'bytes=100-199' } });
      expect(part.status).to.equal(206);
      expect(part.body.equals(blob.subarray(100, 200))).to.equal(true);
    });
  });

  it('refuses to start with redirects but no S3 bucket, saying why', async function () {
    let error: unknown;
    try {
      const berth = await startBerth({ env: { BERTH_S3_REDIRECT: 'true' } });
      await berth.destroy();
    } catch (err) {
      error = err;
    }
    expect((error as Error)?.message).to.include('exited with 2').and.include('BERTH_S3_REDIRECT').and.include('need S3 storage');
  });
});
