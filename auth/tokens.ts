// Bearer tokens as the Docker registry token spec defines them: JWTs signed ES256, with `access`
// entries naming exactly what was granted. Verification accepts only our algorithm, key, issuer and
// audience, so `alg: none`, HS256 made with the public key, and other services' tokens all fail; a header
// that names or carries a key (jwk, jku, x5c, x5u) or asks for extensions (crit) is refused outright, so
// no later change of library or verifier can come to trust a key the token brings along.
import { createRequire } from 'node:module';
import type JsonWebToken from 'jsonwebtoken';
import { randomBytes } from 'node:crypto';
import type { SigningKey } from './keys.ts';
import type { Principal, ScopeGrant } from './policy.ts';

// Loaded (synchronously: it is CommonJS) with the first token signed or checked, so an idle server does not
// carry it and the semver tables it brings.
let jwtModule: typeof JsonWebToken | undefined;
const jwt = (): typeof JsonWebToken => (jwtModule ??= createRequire(import.meta.url)('jsonwebtoken') as typeof JsonWebToken);

export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

/** A scope as a client asks for it: `repository:<name>:<actions>` or `registry:catalog:*`. */
export interface RequestedScope {
  type: string;
  name: string;
  actions: string[];
}

/** Berth's own claim: who the subject is, so a route can ask the policy about repositories the token does not name. */
interface BerthClaim {
  k: Principal['kind'];
  a?: boolean;
  ns?: string;
  l?: ScopeGrant[];
}

export interface TokenClaims {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  nbf: number;
  iat: number;
  jti: string;
  access: AccessEntry[];
  berth?: BerthClaim;
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: string;
}

export type Verified = { ok: true; claims: TokenClaims } | { ok: false; reason: string };

/**
 * Parses the scope parameters of a token request. The resource name sits between the first and the last
 * colon (a name may carry a registry host with a port); the type may carry a class, `repository(plugin)`.
 */
export function parseScopes(values: string[]): RequestedScope[] {
  const scopes: RequestedScope[] = [];
  for (const value of values) {
    for (const text of value.split(' ')) {
      const first = text.indexOf(':');
      const last = text.lastIndexOf(':');
      if (first < 0 || last <= first) continue;
      const type = text.slice(0, first).replace(/\(.*\)$/, '');
      const name = text.slice(first + 1, last);
      const actions = text.slice(last + 1).split(',').filter(Boolean);
      if (type && name && actions.length > 0) scopes.push({ type, name, actions });
    }
  }
  return scopes;
}

/** Merges repeated scopes for one resource, so asking twice can never add up to more than asking once. */
export function mergeScopes(scopes: RequestedScope[]): RequestedScope[] {
  const merged = new Map<string, RequestedScope>();
  for (const scope of scopes) {
    const key = `${scope.type}:${scope.name}`;
    const seen = merged.get(key);
    if (seen) seen.actions = [...new Set([...seen.actions, ...scope.actions])];
    else merged.set(key, { ...scope, actions: [...new Set(scope.actions)] });
  }
  return [...merged.values()];
}

export function principalOf(claims: TokenClaims): Principal {
  const b = claims.berth;
  if (!b || b.k === 'anonymous' || !claims.sub) return { kind: 'anonymous' };
  if (b.k === 'robot') return { kind: 'robot', name: claims.sub, namespace: b.ns ?? '' };
  return { kind: 'user', name: claims.sub, admin: b.a === true };
}

export function limitOf(claims: TokenClaims): ScopeGrant[] | undefined {
  return claims.berth?.l;
}

const MAX_CACHED = 10_000;
/** Header parameters that bring a key or a rule of their own: never ours, so never accepted. */
const UNTRUSTED_HEADERS = ['jwk', 'jku', 'x5c', 'x5u', 'x5t', 'x5t#S256', 'crit'];

export class TokenService {
  // Verified tokens by their text: a client sends the same token with every request of a pull.
  private readonly verified = new Map<string, TokenClaims>();

  constructor(
    private readonly key: SigningKey,
    private readonly options: { issuer: string; service: string; ttlSeconds: number },
  ) {}

  get service(): string {
    return this.options.service;
  }

  issue(who: Principal, limit: ScopeGrant[] | undefined, access: AccessEntry[]): IssuedToken {
    const claims = this.claims(who, limit, access);
    // jsonwebtoken keeps the iat given in the payload (noTimestamp would drop it).
    const token = jwt().sign(claims, this.key.privateKey, { algorithm: 'ES256', keyid: this.key.kid });
    return { token, expiresIn: this.options.ttlSeconds, issuedAt: new Date(claims.iat * 1000).toISOString() };
  }

  /** The claims a token for `who` carries (also what a request with Basic credentials is treated as having). */
  claims(who: Principal, limit: ScopeGrant[] | undefined, access: AccessEntry[]): TokenClaims {
    const now = Math.floor(Date.now() / 1000);
    const berth: BerthClaim = { k: who.kind };
    if (who.kind === 'user' && who.admin) berth.a = true;
    if (who.kind === 'robot') berth.ns = who.namespace;
    if (limit) berth.l = limit;
    const claims: TokenClaims = {
      iss: this.options.issuer,
      sub: who.kind === 'anonymous' ? '' : who.name,
      aud: this.options.service,
      exp: now + this.options.ttlSeconds,
      // A little slack for clocks of other verifiers (an external Distribution trusting these tokens).
      nbf: now - 5,
      iat: now,
      jti: randomBytes(16).toString('base64url'),
      access,
      berth,
    };
    return claims;
  }

  verify(token: string): Verified {
    const now = Math.floor(Date.now() / 1000);
    const cached = this.verified.get(token);
    if (cached) {
      if (cached.exp > now) return { ok: true, claims: cached };
      this.verified.delete(token);
      return { ok: false, reason: 'token expired' };
    }
    let claims: TokenClaims;
    try {
      const decoded = jwt().verify(token, this.key.publicKey, {
        algorithms: ['ES256'],
        issuer: this.options.issuer,
        audience: this.options.service,
        complete: true,
      });
      if (decoded.header.kid !== this.key.kid) return { ok: false, reason: 'token signed with an unknown key' };
      const brought = UNTRUSTED_HEADERS.find((name) => Object.hasOwn(decoded.header, name));
      if (brought) return { ok: false, reason: `token header carries ${brought}` };
      claims = decoded.payload as TokenClaims;
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
    if (!Array.isArray(claims.access) || typeof claims.exp !== 'number') return { ok: false, reason: 'token lacks claims' };
    if (this.verified.size >= MAX_CACHED) this.verified.clear();
    this.verified.set(token, claims);
    return { ok: true, claims };
  }
}

/** Whether verified claims grant `action` on a resource (`*` grants every action). */
export function grants(claims: TokenClaims, type: string, name: string, action: string): boolean {
  return claims.access.some((a) => a.type === type && a.name === name && (a.actions.includes(action) || a.actions.includes('*')));
}
