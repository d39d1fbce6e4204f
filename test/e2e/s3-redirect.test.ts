// skopeo, berth pull, podman and docker pulling from a Berth on S3 (s3rver) whose blob GETs answer 307
// to presigned URLs (BERTH_S3_REDIRECT): each client must follow the redirect to S3 and get the same
// bytes. Berth runs in public-index mode (the Docker token flow, a private repository) and reaches S3
// through a recording proxy, which shows the blobs the clients fetched from S3 with a presigned URL. S3
// (s3rver too) refuses a request that brings an Authorization header besides the signed query, so these
// pulls, each with a Bearer token (anonymous or alice's), also show that the clients keep the registry's
// token to the registry.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addUser, cli } from '../helpers/auth.ts';
import { berthCli, clientHome, filesIn } from '../helpers/berth-client.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { requestsSince } from '../helpers/berth-requests.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { podmanSetup, removeDir, Skopeo, startDockerd, tempDir, type DockerEngine, type Podman } from '../helpers/clients.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { OciLayout, pseudoRandomBytes, readOciLayout } from '../helpers/oci-layout.ts';
import { sharedS3 } from '../helpers/s3.ts';

describe('e2e: skopeo, berth pull, podman and docker follow blob redirects to presigned S3 URLs', function () {
  this.timeout(180_000);

  let berth: TestBerth;
  let s3Proxy: FaultProxy;
  let skopeo: Skopeo;
  let work: string;
  let layoutDir: string;
  /** The config and layer digests of the layout's image. */
  let layoutBlobs: string[];
  let image: BusyboxImage;
  let busyboxRef: string;
  /** The config and layer digests of the busybox image as pushed. */
  let busyboxBlobs: string[];
  const alice = 'alice:alice-password-1';

  /** Berth's answers to blob GETs since `mark`: status by digest. */
  function blobGets(mark: number): Map<string, number[]> {
    const answers = new Map<string, number[]>();
    for (const r of requestsSince(berth, mark).filter((r) => r.route === 'blob' && r.method === 'GET')) {
      const digest = r.path.slice(r.path.lastIndexOf('/') + 1);
      answers.set(digest, [...(answers.get(digest) ?? []), r.status]);
    }
    return answers;
  }

  /** The blobs clients fetched from S3 with a presigned URL since `mark` (an index into the proxy's log). */
  function presignedFetches(mark: number): Set<string> {
    const fetched = new Set<string>();
    for (const r of s3Proxy.requests.slice(mark)) {
      const match = /\/blobs\/sha256\/[0-9a-f]{2}\/([0-9a-f]{64})\/data\?.*X-Amz-Signature=/.exec(r.url);
      if (r.method === 'GET' && match) fetched.add(`sha256:${match[1]}`);
    }
    return fetched;
  }

  /** Every blob GET since the marks was redirected, and followed to S3. */
  function expectAllRedirected(berthMark: number, proxyMark: number, digests: string[]): void {
    const answers = blobGets(berthMark);
    expect([...answers.keys()].sort(), 'blobs the client asked Berth for').to.include.members(digests);
    for (const [digest, statuses] of answers) expect(statuses.every((s) => s === 307), `${digest}: ${statuses.join(', ')}`).to.equal(true);
    expect([...presignedFetches(proxyMark)].sort(), 'blobs fetched from S3').to.include.members(digests);
  }

  before(async function () {
    const s3 = await sharedS3();
    s3Proxy = await startFaultProxy(s3.endpoint);
    berth = await startBerth({
      env: {
        ...s3.berthEnv(`e2e-redirect-${randomBytes(4).toString('hex')}/`),
        BERTH_S3_ENDPOINT: s3Proxy.url,
        BERTH_S3_REDIRECT: 'true',
        BERTH_MODE: 'public-index',
      },
    });
    await addUser(berth, 'alice', 'alice-password-1');
    await cli(berth, ['repo', 'visibility', 'alice/private', 'private']);
    skopeo = new Skopeo();
    work = tempDir('redirect-e2e');

    const layout = new OciLayout(join(work, 'layout'));
    const manifest = await layout.addImage({
      platform: { architecture: 'amd64', os: 'linux' },
      layers: [
        // Over 5 MiB: a multipart object in S3, as real layers are.
        [{ path: 'big.bin', content: pseudoRandomBytes('big', 6 * 1024 * 1024) }],
        [{ path: 'small.txt', content: 'a small layer\n' }],
      ],
    });
    layout.writeIndexJson({ '1': manifest });
    layoutDir = layout.dir;
    layoutBlobs = [...readOciLayout(layoutDir).blobs.keys()].filter((d) => d !== manifest.digest);
    for (const name of ['alice/app', 'alice/private']) {
      await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', alice, `oci:${layoutDir}:1`, `docker://${berth.host}/${name}:1`]);
    }
    image = await busyboxImage('redirect');
    busyboxRef = `${berth.host}/alice/busybox:1`;
    const archive = join(work, 'busybox.tar');
    writeFileSync(archive, await image.archive([busyboxRef]));
    await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', alice, `docker-archive:${archive}`, `docker://${busyboxRef}`]);
    // skopeo compressed the archive's layer as it pushed: the digests are those of the manifest it wrote.
    const pushed = await skopeo.json<{ config: { digest: string }; layers: { digest: string }[] }>(['inspect', '--raw', '--tls-verify=false', `docker://${busyboxRef}`]);
    busyboxBlobs = [pushed.config.digest, ...pushed.layers.map((l) => l.digest)];
  });

  after(async function () {
    await berth?.destroy();
    await s3Proxy?.close();
    skopeo?.cleanup();
    if (work) removeDir(work);
  });

  it('skopeo copies a public image anonymously into an OCI layout whose blobs verify', async function () {
    const [berthMark, proxyMark] = [berth.logs.length, s3Proxy.requests.length];
    const out = join(work, 'pulled');
    await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/alice/app:1`, `oci:${out}:1`]);
    // readOciLayout checks every blob's bytes against its digest and every descriptor's size.
    const original = readOciLayout(layoutDir);
    const pulled = readOciLayout(out);
    expect(pulled.refs.get('1')?.digest).to.equal(original.refs.get('1')?.digest);
    expect([...pulled.blobs.keys()].sort()).to.deep.equal([...original.blobs.keys()].sort());
    expectAllRedirected(berthMark, proxyMark, layoutBlobs);
  });

  it('skopeo copies from a private repository with credentials, through the same redirects', async function () {
    const [berthMark, proxyMark] = [berth.logs.length, s3Proxy.requests.length];
    const out = join(work, 'private');
    await skopeo.run(['copy', '--src-tls-verify=false', '--src-creds', alice, `docker://${berth.host}/alice/private:1`, `oci:${out}:1`]);
    const pulled = readOciLayout(out);
    expect([...pulled.blobs.keys()]).to.include.members(layoutBlobs);
    expectAllRedirected(berthMark, proxyMark, layoutBlobs);
    // Without credentials the same copy gets no URL at all.
    const refused = await skopeo.run(['copy', '--src-tls-verify=false', `docker://${berth.host}/alice/private:1`, `oci:${join(work, 'refused')}:1`], { allowFailure: true });
    expect(refused.code).to.not.equal(0);
    expect(refused.stderr).to.match(/unauthorized|authentication required|denied/i);
  });

  it('berth pull (the runtime client, fetch) follows them too, with credentials, and verifies every blob', async function () {
    const [berthMark, proxyMark] = [berth.logs.length, s3Proxy.requests.length];
    const home = clientHome();
    try {
      const [user, password] = alice.split(':') as [string, string];
      const login = await berthCli(home, ['login', berth.host, '-u', user, '--password-stdin'], { input: Buffer.from(`${password}\n`) });
      expect(login.code, login.stderr).to.equal(0);
      const pulled = await berthCli(home, ['pull', `${berth.host}/alice/private:1`]);
      expect(pulled.code, pulled.stderr).to.equal(0);
      expectAllRedirected(berthMark, proxyMark, layoutBlobs);
      // The client keeps blobs under their digests, checked as they arrived.
      expect(filesIn(home, 'blobs/sha256').map((hex) => `sha256:${hex}`)).to.include.members(layoutBlobs);
    } finally {
      removeDir(home);
    }
  });

  describe('podman', function () {
    let client: Podman;
    before(function () {
      client = podmanSetup({ insecureRegistries: [berth.host] });
    });
    after(() => client?.cleanup());

    it('pulls an image whose layer and config come from S3, with the image ID of its config', async function () {
      const [berthMark, proxyMark] = [berth.logs.length, s3Proxy.requests.length];
      await client.podman(['pull', '--signature-policy', client.policy, busyboxRef]);
      const id = (await client.podman(['image', 'inspect', '--format', '{{.Id}}', busyboxRef])).stdout.trim();
      expect(`sha256:${id}`).to.equal(image.configDigest);
      expectAllRedirected(berthMark, proxyMark, busyboxBlobs);
    });
  });

  describe('docker', function () {
    let engine: DockerEngine;
    before(async function () {
      engine = await startDockerd({ insecureRegistries: [berth.host] });
    });
    afterEach(function () {
      if (this.currentTest?.state === 'failed' && engine) {
        console.error(`--- dockerd log (tail)\n${engine.log().trimEnd().split('\n').slice(-30).join('\n')}`);
      }
    });
    after(() => engine?.stop());

    it('pulls an image whose layer and config come from S3, and runs it', async function () {
      const [berthMark, proxyMark] = [berth.logs.length, s3Proxy.requests.length];
      await engine.docker(['pull', busyboxRef]);
      const id = (await engine.docker(['image', 'inspect', '--format', '{{.Id}}', busyboxRef])).stdout.trim();
      expect(id).to.equal(image.configDigest);
      expectAllRedirected(berthMark, proxyMark, busyboxBlobs);
      const result = await engine.docker(['run', '--rm', '--network', 'none', busyboxRef, 'echo', 'hello']);
      expect(result.stdout).to.equal('hello\n');
    });
  });
});
