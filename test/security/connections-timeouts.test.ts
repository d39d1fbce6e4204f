// Attacker-style tests: slow and silent connections from several loopback addresses. A request head or
// body that stops arriving is cut within a bounded time, a long upload that keeps moving is not, and the
// health and metrics endpoints keep answering while hundreds of connections trickle.
import { expect } from 'chai';
import { request } from 'node:http';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { Registry, sha256 } from '../helpers/registry.ts';
import { openSlow, timed, type SlowConnection } from '../helpers/slow-client.ts';
import { waitFor } from '../helpers/wait.ts';

const WINDOW_SECONDS = 2;
const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7'];

/** A request head for a body of `length` bytes (undefined: chunked). */
function head(method: string, path: string, length: number | undefined, type = 'application/octet-stream'): string {
  const framing = length === undefined ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`;
  return `${method} ${path} HTTP/1.1\r\nHost: registry.test\r\nContent-Type: ${type}\r\n${framing}\r\n\r\n`;
}

/** Waits for the connection to be closed by the server, failing after `ms`. */
async function closedWithin(connection: SlowConnection, ms: number, what: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms (received ${JSON.stringify(connection.received().slice(0, 200))})`)), ms);
  });
  try {
    return await Promise.race([connection.closed, deadline]);
  } finally {
    clearTimeout(timer);
    connection.socket.destroy();
  }
}

describe('security: slow and silent connections are cut, moving ones are not', function () {
  this.timeout(60_000);
  let berth: TestBerth;
  let registry: Registry;
  const open: SlowConnection[] = [];

  before(async () => {
    berth = await startBerth({
      env: {
        BERTH_HEADERS_TIMEOUT_SECONDS: '2',
        BERTH_BODY_TIMEOUT_SECONDS: String(WINDOW_SECONDS),
        BERTH_BODY_MIN_BYTES_PER_SECOND: '256',
        BERTH_MAX_MANIFEST_BYTES: '65536',
      },
    });
    registry = new Registry(berth.url);
  });
  afterEach(() => {
    for (const connection of open.splice(0)) connection.socket.destroy();
  });
  after(() => berth?.destroy());

  async function connection(address = '127.0.0.1'): Promise<SlowConnection> {
    const opened = await openSlow(berth.port, address);
    open.push(opened);
    return opened;
  }

  it('closes a connection that never sends a request', async () => {
    const silent = await connection('127.0.0.2');
    await closedWithin(silent, 6000, 'a silent connection');
  });

  it('answers 408 and closes a connection whose request head trickles in (slowloris)', async () => {
    const slow = await connection('127.0.0.3');
    slow.send('GET /healthz HTTP/1.1\r\nHost: registry.test\r\n');
    slow.trickle('X-A: b\r\n', 200);
    const answer = await closedWithin(slow, 6000, 'a trickling request head');
    expect(answer).to.match(/^HTTP\/1\.1 408 /);
  });

  it('answers 408 with a spec error and cuts an upload chunk whose body stalls; the session keeps only whole chunks', async () => {
    const location = await registry.startUpload('slow/stalled');
    const stalled = await connection('127.0.0.4');
    stalled.send(head('PATCH', location, 1000) + 'x'.repeat(10));
    const answer = await closedWithin(stalled, WINDOW_SECONDS * 1000 + 4000, 'a stalled body');
    expect(answer).to.match(/^HTTP\/1\.1 408 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).errors[0].code).to.equal('SIZE_INVALID');
    const status = await registry.request('GET', location);
    expect(status.headers.range, 'the cut chunk was rolled back').to.equal('0-0');
    await waitFor(() => berth.logs.some((line) => line.includes('request body stalled')), 'the cut to be logged');
  });

  it('cuts a manifest body that trickles slower than the minimum rate', async () => {
    const trickling = await connection('127.0.0.5');
    trickling.send(head('PUT', '/v2/slow/manifest/manifests/v1', 50_000, 'application/vnd.oci.image.manifest.v1+json'));
    trickling.trickle('{', 100);
    const answer = await closedWithin(trickling, WINDOW_SECONDS * 2000 + 4000, 'a trickling body');
    expect(answer).to.match(/^HTTP\/1\.1 408 /);
  });

  it('lets an upload that keeps moving run for many windows', async () => {
    const location = await registry.startUpload('slow/moving');
    const chunk = Buffer.alloc(32 * 1024, 7);
    const chunks = Math.ceil(((WINDOW_SECONDS * 3 + 1) * 1000) / 100);
    const blob = Buffer.concat(Array.from({ length: chunks }, () => chunk));
    const { ms, value: status } = await timed(
      new Promise<number>((resolve, reject) => {
        const url = new URL(`${location}`, berth.url);
        const req = request(url, { method: 'PATCH', agent: false, localAddress: '127.0.0.6', headers: { 'Content-Length': String(blob.length), 'Content-Type': 'application/octet-stream' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        let sent = 0;
        const timer = setInterval(() => {
          req.write(chunk);
          if (++sent === chunks) {
            clearInterval(timer);
            req.end();
          }
        }, 100);
      }),
    );
    expect(ms, 'the upload took several windows').to.be.greaterThan(WINDOW_SECONDS * 3000);
    expect(status).to.equal(202);
    const put = await registry.request('PUT', `${location}?digest=${sha256(blob)}`);
    expect(put.status, put.text).to.equal(201);
  });

  it('keeps /healthz and /metrics answering while 240 connections from six addresses trickle bodies, and cuts them all once they stall', async () => {
    const locations = await Promise.all(Array.from({ length: 80 }, (_, i) => registry.startUpload(`slow/many${i % 8}`)));
    const heads = [
      ...locations.map((location) => head('PATCH', location, 10_000_000)),
      ...Array.from({ length: 80 }, (_, i) => head('PUT', `/v2/slow/many${i % 8}/manifests/t${i}`, 60_000, 'application/vnd.oci.image.manifest.v1+json')),
      ...Array.from({ length: 80 }, (_, i) => head('POST', `/v2/slow/many${i % 8}/blobs/uploads/?digest=${sha256(String(i))}`, undefined)),
    ];
    // 200 bytes every 250 ms: three times the minimum rate, so they stay for as long as they keep it up.
    const piece = 'a'.repeat(200);
    const slow = await Promise.all(
      heads.map(async (text, i) => {
        const opened = await connection(ADDRESSES[i % ADDRESSES.length]);
        opened.send(text);
        const stop = opened.trickle(text.includes('chunked') ? `${piece.length.toString(16)}\r\n${piece}\r\n` : piece, 250);
        return { opened, stop };
      }),
    );

    // Probed for longer than a window, so the server has judged every trickle at least once meanwhile.
    const until = Date.now() + WINDOW_SECONDS * 1500;
    let probes = 0;
    while (Date.now() < until || probes < 5) {
      const health = await timed(registry.request('GET', '/healthz'));
      expect(health.value.status).to.equal(200);
      expect(health.ms, '/healthz under load').to.be.lessThan(1000);
      const metrics = await timed(registry.request('GET', '/metrics'));
      expect(metrics.value.status).to.equal(200);
      expect(metrics.ms, '/metrics under load').to.be.lessThan(1000);
      probes++;
    }
    expect(slow.filter(({ opened }) => opened.socket.destroyed), 'trickles that keep the rate are not cut').to.have.length(0);

    for (const { stop } of slow) stop();
    await Promise.all(slow.map(({ opened }, i) => closedWithin(opened, WINDOW_SECONDS * 2000 + 6000, `stalled connection ${i}`)));
    expect(slow.filter(({ opened }) => opened.status() === 408), 'each was answered 408').to.have.length(slow.length);
    expect((await registry.request('GET', '/healthz')).status).to.equal(200);
  });
});

describe('security: a JSON or form body past its limit is refused at once, however long the sender goes on', function () {
  this.timeout(60_000);
  let open: TestBerth;
  let accounts: TestBerth;

  before(async () => {
    [open, accounts] = await Promise.all([
      startBerth({ env: { BERTH_MAX_MANIFEST_BYTES: '65536' } }),
      startBerth({ env: { BERTH_MODE: 'public-index' } }),
    ]);
  });
  after(async () => {
    await open?.destroy();
    await accounts?.destroy();
  });

  const endless: Array<{ what: string; server: () => TestBerth; method: string; path: string; type: string }> = [
    { what: 'a manifest', server: () => open, method: 'PUT', path: '/v2/big/body/manifests/v1', type: 'application/vnd.oci.image.manifest.v1+json' },
    { what: 'a token request (OAuth2 form)', server: () => accounts, method: 'POST', path: '/token', type: 'application/x-www-form-urlencoded' },
    { what: 'a sign-up (JSON)', server: () => accounts, method: 'POST', path: '/api/v1/users', type: 'application/json' },
    { what: 'a web sign-in form', server: () => accounts, method: 'POST', path: '/signin', type: 'application/x-www-form-urlencoded' },
  ];
  for (const { what, server, method, path, type } of endless) {
    it(`${what}: 413 arrives while a chunked body is still being sent, and the connection is closed`, async () => {
      const berth = server();
      const sender = await openSlow(berth.port, '127.0.0.8');
      try {
        const origin = `http://127.0.0.1:${berth.port}`;
        sender.send(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${berth.port}\r\nOrigin: ${origin}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: ${type}\r\nTransfer-Encoding: chunked\r\n\r\n`);
        const piece = 'a'.repeat(16 * 1024);
        const frame = `${piece.length.toString(16)}\r\n${piece}\r\n`;
        sender.trickle(frame, 5);
        await waitFor(() => sender.status(), 'an answer while the body is still coming', 3000);
        expect(sender.status()).to.equal(413);
        await closedWithin(sender, 3000, 'the refused sender');
      } finally {
        sender.socket.destroy();
      }
    });
  }
});
