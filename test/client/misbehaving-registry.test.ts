// berth pull against a small local registry that misbehaves as no real one should: answers that do not
// match the request (a 206 to a plain GET, a Content-Range other than the one asked, a Content-Length
// or Docker-Content-Digest of another blob), connections cut mid-layer, redirect loops, challenges no
// token meets, token endpoints that answer no token, and index entries whose digest is a path. Each is
// a clear error after a bounded number of requests, retries back off, and nothing of the layer stays.
import { expect } from 'chai';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { berthCli, clientHome, filesIn } from '../helpers/berth-client.ts';
import { removeDir } from '../helpers/clients.ts';
import { hexOf, hostArchitecture, jsonBytes, makeLayer, MediaTypes, pseudoRandomBytes, sha256, type Layer } from '../helpers/oci-layout.ts';

/** Layer GETs after which the fake answers 404 whatever a test asked: a client that loops ends, and fails its counts. */
const RUNAWAY = 100;

interface Seen {
  method: string;
  path: string;
  range?: string;
  /** When it arrived (ms, monotonic). */
  at: number;
}

type LayerHandler = (req: IncomingMessage, res: ServerResponse, count: number) => void;

interface FakeRegistry {
  host: string;
  seen: Seen[];
  /** Layer and manifest GETs so far (a test resets them). */
  counts: { layer: number; manifest: number };
  /** How a test wants the layer served; honest (200, or 206 for a Range) when unset. */
  layer?: LayerHandler;
  /** How a test wants the manifest served; honest when unset. */
  manifest?: LayerHandler;
  /** The token endpoint's answer; a JSON token when unset. */
  token?: { status: number; body: string };
  close(): Promise<void>;
}

async function startFakeRegistry(layer: Layer, config: Buffer, manifest: Buffer): Promise<FakeRegistry> {
  const sockets = new Set<Socket>();
  const fake: FakeRegistry = { host: '', seen: [], counts: { layer: 0, manifest: 0 }, close: async () => {} };
  const { counts } = fake;
  const send = (res: ServerResponse, status: number, headers: Record<string, string | number>, body: Buffer) => {
    res.writeHead(status, { 'Content-Length': body.length, ...headers });
    res.end(body);
  };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://fake').pathname;
    fake.seen.push({ method: req.method ?? '', path, ...(req.headers.range ? { range: req.headers.range } : {}), at: performance.now() });
    if (path === '/v2/') return send(res, 200, { 'Content-Type': 'application/json' }, Buffer.from('{}'));
    if (path === '/token') {
      const { status, body } = fake.token ?? { status: 200, body: JSON.stringify({ token: 'a-token', expires_in: 300 }) };
      return send(res, status, { 'Content-Type': 'application/json' }, Buffer.from(body));
    }
    if (path === '/v2/app/manifests/v1') {
      if (fake.manifest) return fake.manifest(req, res, ++counts.manifest);
      return send(res, 200, { 'Content-Type': MediaTypes.ociManifest, 'Docker-Content-Digest': sha256(manifest) }, manifest);
    }
    if (path === `/v2/app/blobs/${sha256(config)}`) return send(res, 200, { 'Content-Type': 'application/octet-stream' }, config);
    if (path === `/v2/app/blobs/${layer.digest}`) {
      const count = ++counts.layer;
      if (count > RUNAWAY) return send(res, 404, { 'Content-Type': 'application/json' }, jsonBytes({ errors: [{ code: 'BLOB_UNKNOWN', message: 'runaway client' }] }));
      if (fake.layer) return fake.layer(req, res, count);
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const range = { 'Content-Range': `bytes ${start}-${layer.gz.length - 1}/${layer.gz.length}` };
      return send(res, start > 0 ? 206 : 200, start > 0 ? range : {}, layer.gz.subarray(start));
    }
    send(res, 404, { 'Content-Type': 'application/json' }, jsonBytes({ errors: [{ code: 'NAME_UNKNOWN', message: path }] }));
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return fake;
}

describe('client: berth pull from a misbehaving registry', function () {
  this.timeout(60_000);

  let layer: Layer;
  let registry: FakeRegistry;
  let home: string;
  let image: string;

  before(async function () {
    layer = await makeLayer([{ path: 'data.bin', content: pseudoRandomBytes('misbehaving', 300_000) }]);
    const config = jsonBytes({ architecture: hostArchitecture(), os: 'linux', config: { Cmd: ['true'] }, rootfs: { type: 'layers', diff_ids: [layer.diffId] } });
    const manifest = jsonBytes({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: { mediaType: MediaTypes.ociConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: MediaTypes.ociLayerGzip, digest: layer.digest, size: layer.gz.length }],
    });
    registry = await startFakeRegistry(layer, config, manifest);
    image = `${registry.host}/app:v1`;
  });

  after(() => registry?.close());

  beforeEach(function () {
    home = clientHome();
    registry.seen.length = 0;
    registry.counts.layer = registry.counts.manifest = 0;
    delete registry.layer;
    delete registry.manifest;
    delete registry.token;
  });

  afterEach(function () {
    removeDir(home);
  });

  const layerPath = () => `/v2/app/blobs/${layer.digest}`;
  const layerGets = () => registry.seen.filter((s) => s.path === layerPath());

  /** berth pull, expected to fail: its message, after checking nothing of the layer stayed. */
  async function failedPull(): Promise<string> {
    const result = await berthCli(home, ['pull', image]);
    expect(result.code, result.stderr).to.equal(1);
    expect(filesIn(home, 'blobs/sha256'), 'blobs').to.deep.equal([]);
    expect(filesIn(home, 'downloads'), 'partial downloads').to.deep.equal([]);
    return result.stderr;
  }

  it('pulls from it when it behaves (the fake itself is sound)', async function () {
    const result = await berthCli(home, ['pull', image]);
    expect(result.code, result.stderr).to.equal(0);
    expect(layerGets()).to.have.length(1);
  });

  it('refuses a 206 to a GET without Range, once (it looped on a wrong Content-Range)', async function () {
    registry.layer = (_req, res) => {
      const body = layer.gz.subarray(5);
      res.writeHead(206, { 'Content-Range': `bytes 5-${layer.gz.length - 1}/${layer.gz.length}`, 'Content-Length': body.length });
      res.end(body);
    };
    const stderr = await failedPull();
    expect(stderr).to.include(`GET http://${registry.host}${layerPath()}: answered 206 Partial Content to a request without Range (expected 200)`);
    expect(layerGets()).to.have.length(1);
  });

  it('refuses a Content-Range other than the range it asked for when resuming, and keeps no spliced bytes', async function () {
    // What an interrupted pull left: the client resumes from its end with Range.
    mkdirSync(join(home, 'downloads'), { recursive: true });
    writeFileSync(join(home, 'downloads', `sha256-${hexOf(layer.digest)}`), layer.gz.subarray(0, 100_000));
    registry.layer = (_req, res) => {
      res.writeHead(206, { 'Content-Range': `bytes 0-${layer.gz.length - 1}/${layer.gz.length}`, 'Content-Length': layer.gz.length });
      res.end(layer.gz);
    };
    const stderr = await failedPull();
    expect(layerGets().map((s) => s.range)).to.deep.equal(['bytes=100000-']);
    expect(stderr).to.include(`answered Content-Range bytes 0-${layer.gz.length - 1}/${layer.gz.length} to Range bytes=100000- of ${layer.gz.length} bytes`);
  });

  it('refuses a Content-Length other than the blob\'s at once, without waiting for bytes that never come', async function () {
    registry.layer = (_req, res) => {
      res.writeHead(200, { 'Content-Length': layer.gz.length + 1000 });
      res.write(layer.gz); // and the connection stays open
    };
    const stderr = await failedPull();
    expect(stderr).to.include(`answered Content-Length ${layer.gz.length + 1000} where ${layer.gz.length} bytes of ${layer.digest} were asked for`);
    expect(layerGets()).to.have.length(1);
  });

  it('refuses a blob the registry says is another (Docker-Content-Digest)', async function () {
    const other = sha256('another blob');
    registry.layer = (_req, res) => {
      res.writeHead(200, { 'Content-Length': layer.gz.length, 'Docker-Content-Digest': other });
      res.end(layer.gz);
    };
    const stderr = await failedPull();
    expect(stderr).to.include(`answered Docker-Content-Digest ${other} for ${layer.digest}`);
    expect(layerGets()).to.have.length(1);
  });

  it('retries a layer whose connection breaks a bounded number of times, backing off between attempts', async function () {
    registry.layer = (_req, res) => {
      res.writeHead(200, { 'Content-Length': layer.gz.length });
      res.write(layer.gz.subarray(0, 1000), () => res.socket?.destroy());
    };
    const result = await berthCli(home, ['pull', image]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/download interrupted at byte \d+ of \d+.*pull again to resume/);
    const arrivals = layerGets().map((s) => s.at);
    expect(arrivals).to.have.length(3);
    // 250 ms, then 500 ms (less a timer's rounding): a registry in trouble is not hammered.
    expect(arrivals[1]! - arrivals[0]!, 'first pause').to.be.at.least(240);
    expect(arrivals[2]! - arrivals[1]!, 'second pause').to.be.at.least(490);
  });

  it('stops following a redirect loop after 10 hops, and does not start it again', async function () {
    registry.layer = (req, res) => {
      res.writeHead(307, { Location: req.url!, 'Content-Length': 0 });
      res.end();
    };
    const stderr = await failedPull();
    expect(stderr).to.include(`GET http://${registry.host}${layerPath()}: more than 10 redirects`);
    expect(layerGets()).to.have.length(11);
  });

  /** Every manifest GET answered 401 with a Bearer challenge whose realm is the fake's /token. */
  function challengeEveryManifestGet(): void {
    registry.manifest = (_req, res) => {
      res.writeHead(401, {
        'WWW-Authenticate': `Bearer realm="http://${registry.host}/token",service="fake",scope="repository:app:pull"`,
        'Content-Type': 'application/json',
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'no' }] }));
    };
  }

  it('refuses a redirect to something that is no URL', async function () {
    registry.layer = (_req, res) => {
      res.writeHead(302, { Location: 'http://[not-a-host', 'Content-Length': 0 });
      res.end();
    };
    const stderr = await failedPull();
    expect(stderr).to.include(`GET http://${registry.host}${layerPath()}: redirected to "http://[not-a-host", which is no URL`);
    expect(layerGets()).to.have.length(1);
  });

  for (const [what, token] of [
    ['not JSON', { status: 200, body: '<html>sign in</html>' }],
    ['a 204 without a body', { status: 204, body: '' }],
  ] as const) {
    it(`reports a token endpoint that answers ${what} as the registry's fault, not a crash`, async function () {
      challengeEveryManifestGet();
      registry.token = token;
      const result = await berthCli(home, ['pull', image]);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.match(new RegExp(`^berth: GET http://${registry.host}/token: .+$`, 'm'));
      expect(result.stderr).to.not.include('    at ');
    });
  }

  it('refuses an index entry whose digest is no digest, before asking for anything with it', async function () {
    const entry = { mediaType: MediaTypes.ociManifest, digest: 'sha256:../../../token', size: 100, platform: { os: 'linux', architecture: hostArchitecture() } };
    const index = jsonBytes({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [entry] });
    registry.manifest = (_req, res) => {
      res.writeHead(200, { 'Content-Type': MediaTypes.ociIndex, 'Content-Length': index.length, 'Docker-Content-Digest': sha256(index) });
      res.end(index);
    };
    const stderr = await failedPull();
    expect(stderr).to.include('"sha256:../../../token" is not a sha256 or sha512 digest');
    expect(registry.seen.map((s) => s.path)).to.deep.equal(['/v2/app/manifests/v1']);
  });

  it('answers a challenge once: a registry that refuses every token ends the pull after one token request', async function () {
    challengeEveryManifestGet();
    const result = await berthCli(home, ['pull', image]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include('401 UNAUTHORIZED: no');
    expect(registry.seen.filter((s) => s.path === '/v2/app/manifests/v1')).to.have.length(2);
    expect(registry.seen.filter((s) => s.path === '/token')).to.have.length(1);
  });
});
