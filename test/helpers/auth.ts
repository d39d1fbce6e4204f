// The Docker token flow as a client runs it, for the auth tests: read the challenge, ask the realm for a
// token (with Basic credentials or none), and send it as a Bearer token.
import { expect } from 'chai';
import type { TestBerth } from './berth.ts';
import { Registry, type RawResponse } from './registry.ts';

export interface Challenge {
  realm: string;
  service: string;
  scope?: string;
  error?: string;
}

export function parseChallenge(header: string | undefined): Challenge {
  expect(header, 'WWW-Authenticate').to.match(/^Bearer /);
  const params: Record<string, string> = {};
  for (const m of header!.slice(7).matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!] = m[2]!;
  return params as unknown as Challenge;
}

export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** GET /token with the given scopes (and credentials, when given). */
export function tokenRequest(registry: Registry, scopes: string[], credentials?: [string, string], extra = ''): Promise<RawResponse> {
  const query = scopes.map((s) => `scope=${encodeURIComponent(s)}`).join('&');
  const headers: Record<string, string> = credentials ? { Authorization: basic(...credentials) } : {};
  return registry.request('GET', `/token?service=berth&${query}${extra}`, { headers });
}

/** A token for the scopes, or the test fails. */
export async function tokenFor(registry: Registry, scopes: string[], credentials?: [string, string]): Promise<string> {
  const res = await tokenRequest(registry, scopes, credentials);
  expect(res.status, res.text).to.equal(200);
  return res.json.token as string;
}

export function bearer(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}` };
}

/** The claims of a JWT, unverified (the tests check what Berth put in). */
export function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, any> } {
  const [h, c] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()),
    claims: JSON.parse(Buffer.from(c!, 'base64url').toString()),
  };
}

/** Creates an account through the `berth` command, as an operator would. */
export async function addUser(berth: TestBerth, name: string, password: string, admin = false): Promise<void> {
  const res = await berth.cli(['user', 'add', name, '--password-stdin', ...(admin ? ['--admin'] : [])], `${password}\n`);
  expect(res.code, res.stderr).to.equal(0);
}

export async function cli(berth: TestBerth, args: string[], stdin?: string): Promise<string> {
  const res = await berth.cli(args, stdin);
  expect(res.code, `berth ${args.join(' ')}: ${res.stderr}`).to.equal(0);
  return res.stdout;
}

/** A registry client whose every request carries `headers`. */
export class AuthorizedRegistry extends Registry {
  constructor(
    base: string,
    private readonly headers: Record<string, string>,
  ) {
    super(base);
  }

  override request(method: string, path: string, options: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawResponse> {
    return super.request(method, path, { ...options, headers: { ...this.headers, ...options.headers } });
  }
}

/** One audit line: auth/audit.ts's AuditEvent, as logged. */
export interface AuditLine {
  who: string;
  action: string;
  allowed: boolean;
  repository?: string;
  granted?: string[];
  reason?: string;
  address?: string;
  [field: string]: unknown;
}

/** The audit lines the server logged so far (written as its log is: a test waits for a line it expects). */
export function auditOf(berth: TestBerth): AuditLine[] {
  return berth.logs.flatMap((line) => {
    try {
      const audit = (JSON.parse(line) as { audit?: AuditLine }).audit;
      return audit ? [audit] : [];
    } catch {
      return [];
    }
  });
}
