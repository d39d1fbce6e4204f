import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { startBerth } from '../helpers/berth.ts';
import { Registry, sha256 } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';
import { berthArgs } from '../helpers/built.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

describe('server lifecycle: restart, configuration, graceful shutdown', () => {
  it('a chunked upload continues after a restart and commits with the right digest', async () => {
    const berth = await startBerth();
    try {
      const registry = new Registry(berth.url);
      const blob = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < blob.length; i++) blob[i] = (i * 31) % 251;
      const location = await registry.startUpload('restart/app');
      const first = await registry.request('PATCH', location, {
        body: blob.subarray(0, 1024 * 1024),
        headers: { 'Content-Range': `0-${1024 * 1024 - 1}` },
      });
      expect(first.status).to.equal(202);

      await berth.restart();

      // The session and its offset survived; the running hash is rebuilt from what is stored.
      const status = await registry.request('GET', location);
      expect(status.status).to.equal(204);
      expect(status.headers.range).to.equal(`0-${1024 * 1024 - 1}`);
      const second = await registry.request('PATCH', location, {
        body: blob.subarray(1024 * 1024),
        headers: { 'Content-Range': `${1024 * 1024}-${blob.length - 1}` },
      });
      expect(second.status).to.equal(202);
      const put = await registry.request('PUT', `${location}?digest=${sha256(blob)}`);
      expect(put.status, put.text).to.equal(201);
      const back = await registry.request('GET', `/v2/restart/app/blobs/${sha256(blob)}`);
      expect(back.body.equals(blob)).to.equal(true);
    } finally {
      await berth.destroy();
    }
  });

  it('a chunked upload spanning several storage parts survives restarts between chunks, byte-exact', async () => {
    // 13 MiB in 1.5 MiB chunks: on S3 (5 MiB parts) chunks end mid-part, parts gather bytes from several
    // requests, and the upload is continued by a new process twice.
    const berth = await startBerth();
    try {
      const registry = new Registry(berth.url);
      const blob = Buffer.alloc(13 * 1024 * 1024 + 321);
      for (let i = 0; i < blob.length; i++) blob[i] = (i * 13 + (i >> 12)) % 251;
      const location = await registry.startUpload('restart/parts');
      const chunk = 1.5 * 1024 * 1024;
      for (let start = 0, n = 0; start < blob.length; start += chunk, n++) {
        if (n === 3 || n === 6) await berth.restart();
        const end = Math.min(blob.length, start + chunk) - 1;
        const res = await registry.request('PATCH', location, {
          body: blob.subarray(start, end + 1),
          headers: { 'Content-Range': `${start}-${end}` },
        });
        expect(res.status, res.text).to.equal(202);
        expect(res.headers.range).to.equal(`0-${end}`);
      }
      const put = await registry.request('PUT', `${location}?digest=${sha256(blob)}`);
      expect(put.status, put.text).to.equal(201);
      const back = await registry.request('GET', `/v2/restart/parts/blobs/${sha256(blob)}`);
      expect(back.body.equals(blob)).to.equal(true);
      const range = await registry.request('GET', `/v2/restart/parts/blobs/${sha256(blob)}`, {
        headers: { Range: 'bytes=5242000-10486000' },
      });
      expect(range.status).to.equal(206);
      expect(range.body.equals(blob.subarray(5242000, 10486001))).to.equal(true);
    } finally {
      await berth.destroy();
    }
  });

  it('abandoned upload sessions expire with their data; younger ones and finished blobs stay', async () => {
    const berth = await startBerth({ env: { BERTH_UPLOAD_EXPIRY_SECONDS: '3', BERTH_UPLOAD_PURGE_INTERVAL_SECONDS: '1' } });
    try {
      const registry = new Registry(berth.url);
      const abandoned = await registry.startUpload('expiry/app');
      expect((await registry.request('PATCH', abandoned, { body: Buffer.alloc(100_000, 1) })).status).to.equal(202);
      const kept = await registry.pushBlob('expiry/app', 'a finished blob stays');
      await waitFor(async () => (await registry.request('GET', abandoned)).status === 404, 'the abandoned session to expire', 15_000);
      // A session opened now is younger than the expiry: it stays through the next purges.
      const young = await registry.startUpload('expiry/app');
      await waitFor(() => berth.logs.some((l) => l.includes('expired upload sessions removed')), 'the purge log line');
      expect((await registry.request('GET', young)).status).to.equal(204);
      expect((await registry.request('PATCH', young, { body: 'still open' })).status).to.equal(202);
      expect((await registry.request('GET', `/v2/expiry/app/blobs/${kept}`)).text).to.equal('a finished blob stays');
      expect((await registry.request('PATCH', abandoned, { body: 'x' })).status).to.equal(404);
      const storage = berth.storage;
      expect(await storage.list(`/repositories/expiry/app/_uploads`)).to.have.length(1);
    } finally {
      await berth.destroy();
    }
  });

  it('a rate limit per client address answers TOO_MANY_REQUESTS with Retry-After past the limit', async () => {
    const berth = await startBerth({ env: { BERTH_RATE_LIMIT_PER_MINUTE: '5' } });
    try {
      const registry = new Registry(berth.url);
      for (let i = 0; i < 5; i++) {
        const res = await registry.request('GET', '/v2/');
        expect(res.status, `request ${i + 1}`).to.equal(200);
        expect(res.headers['ratelimit-remaining']).to.equal(String(4 - i));
      }
      const refused = await registry.request('GET', '/v2/limited/app/tags/list');
      expect(refused.status).to.equal(429);
      expect(refused.json.errors[0].code).to.equal('TOO_MANY_REQUESTS');
      expect(Number(refused.headers['retry-after'])).to.be.within(1, 60);
      // Health and metrics are not the registry API: never limited.
      expect((await registry.request('GET', '/healthz')).status).to.equal(200);
    } finally {
      await berth.destroy();
    }
  });

  it('a wrong configuration value stops start-up with a message that names the variable', () => {
    const run = (env: Record<string, string>) =>
      spawnSync(process.execPath, berthArgs(['serve']), {
        cwd: ROOT,
        env: { ...process.env, BERTH_DATA: '/tmp/berth-never-used', ...env },
        encoding: 'utf8',
        timeout: 30_000,
      });
    const badListen = run({ BERTH_LISTEN: 'not-an-address' });
    expect(badListen.status).to.equal(2);
    expect(badListen.stderr).to.include('BERTH_LISTEN');
    expect(badListen.stderr).to.include('address:port');
    const badPort = run({ BERTH_LISTEN: '127.0.0.1:99999' });
    expect(badPort.status).to.equal(2);
    expect(badPort.stderr).to.include('65535');
    const badBool = run({ BERTH_DELETE_ENABLED: 'maybe' });
    expect(badBool.status).to.equal(2);
    expect(badBool.stderr).to.include('BERTH_DELETE_ENABLED');
    const badFile = run({ BERTH_CONFIG: '/nonexistent/berth.json' });
    expect(badFile.status).to.equal(2);
    expect(badFile.stderr).to.include('BERTH_CONFIG');
  });

  it('settings can come from a JSON file named by BERTH_CONFIG, with the environment winning', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(`${tmpdir()}/berth-config-`);
    writeFileSync(`${dir}/berth.json`, JSON.stringify({ readOnly: true, chunkMinLength: 1234 }));
    const berth = await startBerth({ env: { BERTH_CONFIG: `${dir}/berth.json`, BERTH_READ_ONLY: 'false' } });
    try {
      const res = await new Registry(berth.url).request('POST', '/v2/cfg/app/blobs/uploads/');
      expect(res.status).to.equal(202);
      expect(res.headers['oci-chunk-min-length']).to.equal('1234');
    } finally {
      await berth.destroy();
    }
  });

  it('SIGTERM lets an in-flight upload finish, then the process exits', async () => {
    const berth = await startBerth();
    try {
      const registry = new Registry(berth.url);
      const location = await registry.startUpload('graceful/app');
      const body = Buffer.alloc(64 * 1024, 1);
      const socket = connect(berth.port, '127.0.0.1');
      const reply = new Promise<string>((resolveReply) => {
        let text = '';
        socket.on('data', (c) => {
          text += c.toString();
          if (text.includes('\r\n\r\n')) resolveReply(text);
        });
      });
      await new Promise<void>((r) =>
        socket.write(`PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, () => r()),
      );
      socket.write(body.subarray(0, 1000));
      await waitFor(async () => (await registry.request('GET', '/metrics')).text.includes('berth_uploads_in_progress 1'), 'the upload to be in progress');
      const exited = new Promise<number | null>((r) => berth.process.once('exit', (code) => r(code)));
      berth.process.kill('SIGTERM');
      socket.write(body.subarray(1000));
      expect(await reply).to.match(/^HTTP\/1\.1 202/);
      socket.end();
      expect(await exited).to.equal(0);
      await berth.restart();
      const status = await registry.request('GET', location);
      expect(status.headers.range).to.equal(`0-${body.length - 1}`);
    } finally {
      await berth.destroy();
    }
  });
});
