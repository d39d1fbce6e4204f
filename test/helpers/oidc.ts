// A real OpenID provider (the oidc-provider package) on a loopback port, with one confidential client and
// accounts the test changes as it goes (groups, removal), and a small browser that follows redirects,
// keeps cookies per origin and submits the provider's login and consent forms: the authorization code
// flow without Chromium, which it does not need.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type TestBerth } from './berth.ts';
import { csrfIn } from './web.ts';

export const CLIENT_ID = 'berth';
export const CLIENT_SECRET = 'berth-client-secret-that-never-appears-in-logs';

export interface ProviderUser {
  username: string;
  name: string;
  email: string;
  groups: string[];
}

export interface TestOidc {
  issuer: string;
  /** The accounts by subject: the test adds, changes and removes them; the provider reads them at each use. */
  users: Map<string, ProviderUser>;
  /** Registers the client with the redirect URL Berth was given (known once Berth is listening). */
  configure(redirectUri: string): Promise<void>;
  /** Stops answering: every open connection cut, the port closed. */
  stop(): Promise<void>;
  /**
   * While set, the ID token of each token response has its claims rewritten and its signature kept: what
   * an attacker on the way would send, which only the signature check (the provider's JWKS) can tell.
   */
  tamperIdToken?: (claims: Record<string, unknown>) => Record<string, unknown>;
  /**
   * With tamperIdToken: signs the changed claims again with the provider's own key, as a provider that
   * issued them would (for another client, another issuer's name, an expired time): only the checks of the
   * claims themselves can refuse such a token.
   */
  resignTamperedIdToken?: boolean;
}

/** Rewrites the ID token in a token response's JSON body, keeping the header and the signature unless given a key to sign with (RS256). */
function tampered(body: string, change: (claims: Record<string, unknown>) => Record<string, unknown>, signWith?: KeyObject): string {
  const response = JSON.parse(body) as { id_token?: string };
  if (!response.id_token) return body;
  const [header, payload, signature] = response.id_token.split('.');
  const claims = change(JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>);
  const signed = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const newSignature = signWith ? sign('sha256', Buffer.from(signed), signWith).toString('base64url') : signature;
  return JSON.stringify({ ...response, id_token: `${signed}.${newSignature}` });
}

export async function startOidcProvider(users: Map<string, ProviderUser>): Promise<TestOidc> {
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const change = oidc.tamperIdToken;
    if (change && req.method === 'POST' && req.url?.startsWith('/token')) {
      // The provider answers with one end(body): the body is rewritten there, and its length with it.
      const end = res.end.bind(res) as (body?: unknown) => ServerResponse;
      res.end = ((body?: unknown) => {
        if (typeof body !== 'string' && !Buffer.isBuffer(body)) return end(body);
        const rewritten = tampered(body.toString(), change, oidc.resignTamperedIdToken ? privateKey : undefined);
        res.setHeader('Content-Length', Buffer.byteLength(rewritten));
        return end(rewritten);
      }) as typeof res.end;
    }
    if (handler) return handler(req, res);
    res.statusCode = 503;
    res.end();
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { default: Provider } = await import('oidc-provider');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = privateKey.export({ format: 'jwk' });
  const oidc: TestOidc = {
    issuer,
    users,
    async configure(redirectUri) {
      const provider = new Provider(issuer, {
        clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [redirectUri], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] }],
        async findAccount(_ctx, sub) {
          const user = users.get(sub);
          if (!user) return undefined;
          return {
            accountId: sub,
            async claims() {
              const now = users.get(sub) ?? user;
              return { sub, preferred_username: now.username, name: now.name, email: now.email, groups: now.groups };
            },
          };
        },
        claims: { openid: ['sub'], profile: ['name', 'preferred_username', 'groups'], email: ['email'] },
        scopes: ['openid', 'offline_access', 'profile', 'email'],
        features: { devInteractions: { enabled: true } },
        pkce: { required: () => true, methods: ['S256'] },
        cookies: { keys: ['a-test-cookie-key-for-the-provider'] },
        jwks: { keys: [{ ...signingKey, use: 'sig', kid: 'test-key' }] },
        // A new refresh token at each use: Berth must keep the newest, or its next refresh is refused.
        rotateRefreshToken: true,
        ttl: { Grant: 3600, Session: 3600, Interaction: 600, AccessToken: 600, IdToken: 600, RefreshToken: 3600, AuthorizationCode: 60 },
      });
      provider.on('server_error', () => undefined);
      handler = provider.callback() as typeof handler;
    },
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
  return oidc;
}

export interface BrowserResponse {
  status: number;
  url: URL;
  headers: Headers;
  text: string;
}

/** Cookies per origin, redirects followed by hand (so that a test can stop at any hop), forms posted. */
export class Browser {
  private readonly jar = new Map<string, Map<string, string>>();

  cookie(origin: string, name: string): string | undefined {
    return this.jar.get(origin)?.get(name);
  }

  setCookie(origin: string, name: string, value: string): void {
    if (!this.jar.has(origin)) this.jar.set(origin, new Map());
    this.jar.get(origin)!.set(name, value);
  }

  /** The Cookie header this browser sends to `origin`. */
  cookieHeader(origin: string): string {
    return [...(this.jar.get(origin) ?? new Map<string, string>())].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  async request(method: string, url: URL, body?: URLSearchParams, headers: Record<string, string> = {}): Promise<BrowserResponse> {
    const res = await fetch(url, {
      method,
      redirect: 'manual',
      headers: { Cookie: this.cookieHeader(url.origin), ...(body ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}), ...headers },
      body: body?.toString(),
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const gone = value === '' || attributes.some((a) => /^\s*max-age=0\s*$/i.test(a) || (/^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]!) < Date.now()));
      if (gone) this.jar.get(url.origin)?.delete(name);
      else this.setCookie(url.origin, name, value);
    }
    return { status: res.status, url, headers: res.headers, text: await res.text() };
  }

  /**
   * Follows redirects from `start`, submitting every form the provider shows (login with `login`, then
   * consent), until an answer that is neither; `stopAt` ends the walk before a URL it accepts is asked.
   */
  async walk(start: URL, login: string, stopAt?: (url: URL) => boolean, providerOrigin?: string): Promise<BrowserResponse & { stoppedAt?: URL }> {
    let res = await this.request('GET', start);
    for (let hops = 0; hops < 20; hops++) {
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        const next = new URL(location, res.url);
        if (stopAt?.(next)) return { ...res, stoppedAt: next };
        res = await this.request('GET', next);
        continue;
      }
      const form = /<form[^>]*action="([^"]+)"[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i.exec(res.text);
      if (res.status !== 200 || !form || (providerOrigin && res.url.origin !== providerOrigin)) return res;
      const fields = new URLSearchParams();
      for (const input of form[2]!.matchAll(/<input([^>]*)>/gi)) {
        const name = /name="([^"]*)"/.exec(input[1]!)?.[1];
        if (!name) continue;
        const value = /value="([^"]*)"/.exec(input[1]!)?.[1] ?? '';
        fields.set(name, name === 'login' ? login : name === 'password' ? 'any password' : value);
      }
      res = await this.request('POST', new URL(form[1]!.replace(/&amp;/g, '&'), res.url), fields);
    }
    throw new Error('too many hops');
  }
}

/**
 * A Berth signing in through `oidc` (refreshing every `refreshSeconds`), the client secret in a file. The
 * redirect URL names Berth's port, known once it listens: started plain first, then again on that port
 * with the provider's settings, and the provider's client registered with that URL.
 */
export async function startBerthWithOidc(oidc: TestOidc, env: Record<string, string> = {}, refreshSeconds = 1): Promise<TestBerth> {
  const secrets = mkdtempSync(join(tmpdir(), 'berth-oidc-secret-'));
  const secretFile = join(secrets, 'client-secret');
  writeFileSync(secretFile, `${CLIENT_SECRET}\n`, { mode: 0o600 });
  const settings: Record<string, string> = { BERTH_MODE: 'private', ...env };
  const berth = await startBerth({ env: settings });
  Object.assign(settings, {
    BERTH_PUBLIC_URL: berth.url,
    BERTH_OIDC_ISSUER: oidc.issuer,
    BERTH_OIDC_NAME: 'Test IdP',
    BERTH_OIDC_CLIENT_ID: CLIENT_ID,
    BERTH_OIDC_CLIENT_SECRET_FILE: secretFile,
    BERTH_OIDC_GROUP_ROLES: 'dev=>acme:write; readers=>acme:read',
    BERTH_OIDC_REFRESH_SECONDS: String(refreshSeconds),
    BERTH_OIDC_TIMEOUT_MS: '2000',
  });
  await berth.restart();
  await oidc.configure(`${berth.url}/signin/oidc/callback`);
  const destroy = berth.destroy.bind(berth);
  berth.destroy = async () => {
    await destroy();
    rmSync(secrets, { recursive: true, force: true });
  };
  return berth;
}

/** Signs the provider's account `sub` in to `berth` through the provider; the browser, holding the session. */
export async function signInThroughProvider(berth: TestBerth, oidc: TestOidc, sub: string): Promise<{ browser: Browser; page: string; status: number; path: string }> {
  const browser = new Browser();
  const res = await browser.walk(new URL('/signin/oidc', berth.url), sub, undefined, oidc.issuer);
  return { browser, page: res.text, status: res.status, path: res.url.pathname };
}

/** A personal access token made through the API with the browser's session and its CSRF token: its secret. */
export async function tokenFromSession(berth: TestBerth, browser: Browser, user: string, scopes = ['repository:acme/*:pull,push']): Promise<string> {
  const mine = await browser.request('GET', new URL('/mine', berth.url));
  const made = await fetch(new URL(`/api/v1/users/${user}/tokens`, berth.url), {
    method: 'POST',
    headers: { Cookie: browser.cookieHeader(new URL(berth.url).origin), 'Content-Type': 'application/json', 'X-CSRF-Token': csrfIn(mine.text) },
    body: JSON.stringify({ description: 'docker login', scopes }),
  });
  if (made.status !== 201) throw new Error(`token not made: ${made.status} ${await made.text()}`);
  return ((await made.json()) as { secret: string }).secret;
}
