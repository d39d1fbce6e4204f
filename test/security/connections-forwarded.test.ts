// Attacker-style tests: a client behind (or around) the trusted proxy writes its own X-Forwarded-For,
// X-Forwarded-Host and X-Forwarded-Proto. Limits and the audit log must count the address the proxy saw.
import { expect } from 'chai';
import { request } from 'node:http';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { basic, parseChallenge } from '../helpers/auth.ts';
import { waitFor } from '../helpers/wait.ts';

/** A GET from a chosen loopback source address, with the headers a client (or proxy) chose. */
function get(berth: TestBerth, path: string, headers: Record<string, string>, localAddress = '127.0.0.1'): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, berth.url), { agent: false, localAddress, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The address the audit log recorded for the failed logins of `user`. */
function auditedAddresses(berth: TestBerth, user: string): string[] {
  return berth.logs
    .map((line) => JSON.parse(line) as { audit?: { who?: string; address?: string } })
    .filter((entry) => entry.audit?.who === user)
    .map((entry) => entry.audit!.address!);
}

const failedLogin = (berth: TestBerth, user: string, headers: Record<string, string>, from?: string) =>
  get(berth, '/token?service=berth', { Authorization: basic(user, 'wrong-password'), ...headers }, from);

describe('security: X-Forwarded-For behind one trusted proxy (BERTH_TRUST_PROXY=true)', function () {
  let berth: TestBerth;

  before(async () => {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_TRUST_PROXY: 'true', BERTH_LOGIN_FAILURES_PER_ADDRESS: '2' } });
  });
  after(() => berth?.destroy());

  it('a client that varies the entries it writes itself is still counted by the address the proxy appended', async () => {
    // What the proxy forwards: the client's own header, then the address the proxy saw.
    const attempt = (spoofed: string, user: string) => failedLogin(berth, user, { 'X-Forwarded-For': `${spoofed}, 192.0.2.77` });
    expect((await attempt('198.51.100.1', 'spoof1')).status).to.equal(401);
    expect((await attempt('198.51.100.2', 'spoof2')).status).to.equal(401);
    expect((await attempt('198.51.100.3', 'spoof3')).status, 'the third failure from one address').to.equal(429);
    await waitFor(() => auditedAddresses(berth, 'spoof1').length > 0, 'the audit line');
    expect(auditedAddresses(berth, 'spoof1')).to.deep.equal(['192.0.2.77']);
  });

  it('never takes the host from X-Forwarded-Host: the token realm names the Host the proxy passed on', async () => {
    const res = await get(berth, '/v2/', { Host: 'registry.example', 'X-Forwarded-Host': 'attacker.example', 'X-Forwarded-Proto': 'http, https' });
    expect(res.status).to.equal(401);
    const realm = parseChallenge(res.headers['www-authenticate'] as string).realm;
    // The rightmost X-Forwarded-Proto is the one our proxy wrote.
    expect(realm).to.equal('https://registry.example/token');
  });
});

describe('security: X-Forwarded-For from trusted proxy addresses only (BERTH_TRUSTED_PROXIES)', function () {
  let berth: TestBerth;

  before(async () => {
    berth = await startBerth({
      env: { BERTH_MODE: 'public-index', BERTH_TRUST_PROXY: 'true', BERTH_TRUSTED_PROXIES: '127.0.0.1/32', BERTH_LOGIN_FAILURES_PER_ADDRESS: '2' },
    });
  });
  after(() => berth?.destroy());

  it('a client that reaches the server around the proxy is counted by its own address, whatever it forwards', async () => {
    for (const [i, spoofed] of ['198.51.100.1', '198.51.100.2', '198.51.100.3'].entries()) {
      const res = await failedLogin(berth, `direct${i}`, { 'X-Forwarded-For': spoofed, 'X-Forwarded-Proto': 'https' }, '127.0.0.9');
      expect(res.status).to.equal(i < 2 ? 401 : 429);
    }
    await waitFor(() => auditedAddresses(berth, 'direct0').length > 0, 'the audit line');
    expect(auditedAddresses(berth, 'direct0')).to.deep.equal(['127.0.0.9']);
    const realm = parseChallenge((await get(berth, '/v2/', { Host: 'registry.example', 'X-Forwarded-Proto': 'https' }, '127.0.0.9')).headers['www-authenticate'] as string).realm;
    expect(realm, 'X-Forwarded-Proto from an untrusted peer').to.equal('http://registry.example/token');
  });

  it('through the trusted proxy, the rightmost entry that is not a proxy is the client', async () => {
    const res = await failedLogin(berth, 'proxied', { 'X-Forwarded-For': '198.51.100.9, 192.0.2.33, 127.0.0.1' }, '127.0.0.1');
    expect(res.status).to.equal(401);
    await waitFor(() => auditedAddresses(berth, 'proxied').length > 0, 'the audit line');
    expect(auditedAddresses(berth, 'proxied')).to.deep.equal(['192.0.2.33']);
  });
});
