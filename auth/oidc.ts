// Sign-in through an OpenID Connect provider (openid-client): discovery, the authorization code flow with
// PKCE, state and nonce, the ID token checked against the provider's JWKS (issuer, audience, expiry,
// nonce: the library's checks). The user name and groups come from configurable claims; the user gets a
// local record as a directory's users do (DirectoryAccounts), with the provider's refresh token sealed in
// it. Docker and podman cannot follow a browser, so such a user works with personal access tokens; those
// outlive the ID token but not the account: once the record's last check is older than the refresh
// interval, the provider is asked again with the refresh token, and a refusal (invalid_grant: the user or
// the grant is gone) removes the user and their tokens. A provider that does not answer decides nothing
// (ProviderUnavailableError, a 503): nobody is let in, and nobody removed, on its silence.
import type { Configuration, TokenEndpointResponse, TokenEndpointResponseHelpers } from 'openid-client';
import type { AccountStore, Authenticated } from './accounts.ts';
import type { AuditLog } from './audit.ts';
import { DirectoryAccounts, factsOf } from './directory-accounts.ts';
import { DirectoryUnavailableError, MAX_GROUPS, type DirectoryEntry, type IdentitySource } from './directory.ts';
import { rolesFromGroups, type GroupRole } from './group-roles.ts';
import type { Lock } from '../storage/index.ts';
import type { Role } from './policy.ts';

// openid-client is loaded with the first sign-in: a registry without BERTH_OIDC_ISSUER never carries it.
type OpenIdClient = typeof import('openid-client');
let loaded: Promise<OpenIdClient> | undefined;
const openIdClient = (): Promise<OpenIdClient> => (loaded ??= import('openid-client'));

/** The provider's settings (server/config.ts reads them: BERTH_OIDC_*). */
export interface OidcOptions {
  issuer: string;
  clientId: string;
  /** A function, so that no log line or dump of the settings ever shows the client secret. */
  clientSecret: () => string;
  /** Where the provider sends the browser back: <public URL>/signin/oidc/callback unless set. */
  redirectUrl: string;
  scopes: string;
  usernameClaim: string;
  groupsClaim: string;
  groupRoles: readonly GroupRole[];
  refreshSeconds: number;
  timeoutMs: number;
}

/** Seals what must be stored or handed out but read back only here (events' SecretSeal: AES-256-GCM). */
export interface Sealer {
  seal(secret: string): Promise<string>;
  open(sealed: string): Promise<string | undefined>;
}

/** The provider could not answer (down, silent, refused our client): nobody is decided. */
export class ProviderUnavailableError extends DirectoryUnavailableError {
  constructor(reason: string) {
    super(reason, 'the OpenID provider');
    this.name = 'ProviderUnavailableError';
  }
}

/** How a sign-in that came back from the provider ended. */
export type OidcSignInResult = { ok: true; who: Authenticated } | { ok: false; reason: string };

/** A sign-in under way: what the browser carries (sealed, in a short-lived cookie) between leaving and coming back. */
interface Pending {
  state: string;
  nonce: string;
  verifier: string;
  expiresAt: number;
}

/** How long a browser may spend at the provider between leaving and coming back. */
export const PENDING_TTL_MS = 10 * 60_000;
const MAX_CLAIM = 256;
const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(host);

/** Whether the failure is the provider's (or the network's) rather than a refusal: nothing is decided on it. */
function unreachable(err: unknown): boolean {
  for (let e = err as { name?: string; status?: number; code?: string; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.name === 'TypeError' || e.name === 'AbortError' || e.name === 'TimeoutError') return true;
    if (typeof e.status === 'number' && e.status >= 500) return true;
    if (typeof e.code === 'string' && /^(?:E[A-Z]+|UND_ERR_\w+)$/.test(e.code)) return true;
  }
  return false;
}

/** The error's message with its causes' (the library's outer message alone is often only "invalid response encountered"). */
function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: string; cause?: unknown } | undefined, depth = 0; e && depth < 3; e = e.cause as typeof e, depth++) {
    if (typeof e.message === 'string' && e.message) parts.push(e.message);
  }
  return (parts.join(': ') || String(err)).slice(0, 300);
}

/** The provider, as an IdentitySource: its users read again through their refresh token. */
export class OpenIdProvider implements IdentitySource {
  readonly kind = 'oidc';
  readonly refreshMs: number;
  private configuration?: Promise<Configuration>;

  constructor(
    private readonly options: OidcOptions,
    private readonly accounts: AccountStore,
    private readonly lock: Lock,
    private readonly sealer: Sealer,
  ) {
    this.refreshMs = options.refreshSeconds * 1000;
  }

  roles(entry: DirectoryEntry): Map<string, Role | undefined> {
    return rolesFromGroups(entry.groups, this.options.groupRoles);
  }

  /** The provider's metadata and keys (discovery), once it answered; asked again after a failure. */
  private config(): Promise<Configuration> {
    this.configuration ??= (async () => {
      const client = await openIdClient();
      const issuer = new URL(this.options.issuer);
      const config = await client.discovery(issuer, this.options.clientId, undefined, client.ClientSecretBasic(this.options.clientSecret()), {
        timeout: Math.ceil(this.options.timeoutMs / 1000),
        execute: [
          // Every ID token's signature checked against the provider's JWKS, not only trusted for the TLS it came over.
          client.enableNonRepudiationChecks,
          // Plain HTTP only to a provider on this machine (config.ts refuses it elsewhere): nothing crosses a network.
          ...(issuer.protocol === 'http:' && isLoopback(issuer.hostname) ? [client.allowInsecureRequests] : []),
        ],
      });
      return config;
    })().catch((err: unknown) => {
      this.configuration = undefined;
      throw new ProviderUnavailableError(`discovery failed: ${describe(err)}`);
    });
    return this.configuration;
  }

  /** Where to send the browser, and what it must carry until it comes back (sealed). */
  async begin(): Promise<{ url: string; pending: string }> {
    const client = await openIdClient();
    const config = await this.config();
    const pending: Pending = { state: client.randomState(), nonce: client.randomNonce(), verifier: client.randomPKCECodeVerifier(), expiresAt: Date.now() + PENDING_TTL_MS };
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.options.redirectUrl,
      scope: this.options.scopes,
      code_challenge: await client.calculatePKCECodeChallenge(pending.verifier),
      code_challenge_method: 'S256',
      state: pending.state,
      nonce: pending.nonce,
      // OpenID Connect Core 11: a provider grants offline_access (the refresh token) only with prompt=consent.
      ...(this.options.scopes.split(' ').includes('offline_access') ? { prompt: 'consent' } : {}),
    });
    return { url: url.href, pending: await this.sealer.seal(JSON.stringify(pending)) };
  }

  /**
   * The entry of the user the provider sent back (`callback`: the URL it came back to), checked against
   * what the browser carried: state, nonce and PKCE verifier, the ID token (signature, issuer, audience,
   * expiry). A refusal is { ok: false }; a provider that does not answer throws ProviderUnavailableError.
   */
  async complete(callback: URL, sealedPending: string | undefined): Promise<{ ok: true; entry: DirectoryEntry } | { ok: false; reason: string }> {
    const opened = sealedPending ? await this.sealer.open(sealedPending) : undefined;
    const pending = opened ? (JSON.parse(opened) as Pending) : undefined;
    if (!pending) return { ok: false, reason: 'no sign-in was begun in this browser' };
    if (pending.expiresAt < Date.now()) return { ok: false, reason: 'the sign-in took too long' };
    // The library checks it too; here first, so that a forged callback never reaches the provider.
    if (callback.searchParams.get('state') !== pending.state) return { ok: false, reason: 'the state does not match this browser\'s sign-in' };
    const client = await openIdClient();
    const config = await this.config();
    let tokens;
    try {
      tokens = await client.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: pending.verifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      if (unreachable(err)) throw new ProviderUnavailableError(describe(err));
      return { ok: false, reason: `the provider's answer was refused: ${describe(err)}` };
    }
    return this.entryOf(config, tokens);
  }

  /** The user as the provider has them now, asked with their refresh token; undefined when it refuses. */
  async lookup(username: string): Promise<DirectoryEntry | undefined> {
    // One refresh per user across processes: a provider that rotates refresh tokens refuses an old one,
    // so the second process must read the token the first one stored, never the one it read before.
    return this.lock.run(`auth:oidc:${username}`, async () => {
      const facts = (await this.accounts.user(username))?.directory;
      if (facts?.source !== 'oidc' || !facts.sealedRefreshToken) return undefined;
      if (Date.now() - Date.parse(facts.checkedAt) < this.refreshMs) {
        // Another process asked meanwhile: its answer stands.
        return { dn: facts.dn, username, displayName: facts.displayName, email: facts.email, groups: facts.groups ?? [], sealedRefreshToken: facts.sealedRefreshToken };
      }
      const refreshToken = await this.sealer.open(facts.sealedRefreshToken);
      if (!refreshToken) throw new ProviderUnavailableError('the stored refresh token cannot be opened (the sealing key changed): the user signs in again in the browser');
      const client = await openIdClient();
      const config = await this.config();
      let tokens;
      try {
        tokens = await client.refreshTokenGrant(config, refreshToken);
      } catch (err) {
        // invalid_grant: the grant, or the account, is gone at the provider. Anything else (our client
        // refused, a fault of the provider's) decides nothing: a wrong client secret must not remove everyone.
        if ((err as { error?: unknown }).error === 'invalid_grant') return undefined;
        throw new ProviderUnavailableError(describe(err));
      }
      // A rotated refresh token is kept before anything else can fail: the old one will not be taken again.
      const sealedRefreshToken = tokens.refresh_token ? await this.sealer.seal(tokens.refresh_token) : facts.sealedRefreshToken;
      if (sealedRefreshToken !== facts.sealedRefreshToken) await this.accounts.directoryUser(username, { ...facts, sealedRefreshToken });
      const answer = await this.entryOf(config, tokens, { sealedRefreshToken, subject: facts.dn });
      // The grant stands, so the user does: claims that cannot be read keep them as they were, and say why.
      if (!answer.ok) throw new ProviderUnavailableError(answer.reason);
      // Stored while the lock is held (DirectoryAccounts stores the same facts again after).
      await this.accounts.directoryUser(username, factsOf('oidc', answer.entry));
      return answer.entry;
    });
  }

  /**
   * The entry the tokens describe: the ID token's claims, and the userinfo endpoint's when the ID token
   * lacks the user name or groups claim (many providers put profile claims only there).
   */
  private async entryOf(
    config: Configuration,
    tokens: TokenEndpointResponse & TokenEndpointResponseHelpers,
    /** For a refresh: the refresh token kept (sealed) and the subject the user is; a refresh may bring no ID token. */
    refresh?: { sealedRefreshToken: string; subject: string },
  ): Promise<{ ok: true; entry: DirectoryEntry } | { ok: false; reason: string }> {
    const idClaims = tokens.claims();
    const subject = idClaims?.sub ?? refresh?.subject;
    if (!subject) return { ok: false, reason: 'the provider sent no ID token' };
    if (refresh && subject !== refresh.subject) return { ok: false, reason: 'the provider answered for another subject' };
    let claims: Record<string, unknown> = idClaims ?? { sub: subject };
    const { usernameClaim, groupsClaim } = this.options;
    if ((claims[usernameClaim] === undefined || claims[groupsClaim] === undefined) && config.serverMetadata().userinfo_endpoint) {
      const client = await openIdClient();
      try {
        claims = { ...(await client.fetchUserInfo(config, tokens.access_token, subject)), ...idClaims };
      } catch (err) {
        if (unreachable(err)) throw new ProviderUnavailableError(describe(err));
        return { ok: false, reason: `the provider's userinfo was refused: ${describe(err)}` };
      }
    }
    const username = claims[usernameClaim];
    if (typeof username !== 'string' || !username) return { ok: false, reason: `the provider's answer has no ${usernameClaim} claim` };
    const named = claims[groupsClaim];
    const groups = (Array.isArray(named) ? named : typeof named === 'string' ? [named] : [])
      .filter((g): g is string => typeof g === 'string' && g.length <= MAX_CLAIM)
      .slice(0, MAX_GROUPS);
    // Without a refresh token the user could never be asked again: tokens made here would outlive the account.
    const refreshToken = tokens.refresh_token;
    if (!refreshToken && !refresh) return { ok: false, reason: 'the provider issued no refresh token (add offline_access to BERTH_OIDC_SCOPES, or allow the client refresh tokens)' };
    const text = (value: unknown) => (typeof value === 'string' ? value.slice(0, MAX_CLAIM) : undefined);
    return {
      ok: true,
      entry: {
        dn: subject,
        username: username.toLowerCase(),
        displayName: text(claims.name),
        email: text(claims.email),
        groups,
        sealedRefreshToken: refresh?.sealedRefreshToken ?? (await this.sealer.seal(refreshToken!)),
      },
    };
  }
}

/** The provider's sign-in as the web asks for it: begin, then complete into a user here (audited). */
export class OidcSignIn {
  readonly provider: OpenIdProvider;
  readonly accounts: DirectoryAccounts<OpenIdProvider>;

  constructor(
    private readonly options: OidcOptions,
    private readonly store: AccountStore,
    lock: Lock,
    sealer: Sealer,
    private readonly audit: AuditLog,
  ) {
    this.provider = new OpenIdProvider(options, store, lock, sealer);
    this.accounts = new DirectoryAccounts(this.provider, store, audit);
  }

  async begin(address?: string): Promise<{ url: string; pending: string }> {
    try {
      return await this.provider.begin();
    } catch (err) {
      if (err instanceof ProviderUnavailableError) this.audit.record({ who: 'anonymous', action: 'oidc sign-in', allowed: false, reason: err.message, address });
      throw err;
    }
  }

  /** The URL the provider sent the browser back to, with its query: the redirect URL as registered (never the request's Host). */
  callbackUrl(search: string): URL {
    const url = new URL(this.options.redirectUrl);
    url.search = search;
    return url;
  }

  /** Who the provider's answer proves the browser's user to be, or why not; every outcome audited. */
  async complete(callback: URL, sealedPending: string | undefined, address?: string): Promise<OidcSignInResult> {
    const refuse = (reason: string, who = 'anonymous'): OidcSignInResult => {
      this.audit.record({ who, action: 'oidc sign-in', allowed: false, reason, address });
      return { ok: false, reason };
    };
    let answer;
    try {
      answer = await this.provider.complete(callback, sealedPending);
    } catch (err) {
      if (err instanceof ProviderUnavailableError) this.audit.record({ who: 'anonymous', action: 'oidc sign-in', allowed: false, reason: err.message, address });
      throw err;
    }
    if (!answer.ok) return refuse(answer.reason);
    const { entry } = answer;
    // A name the provider gives another person later (a reused preferred_username) never inherits the first one's account.
    const facts = (await this.store.user(entry.username))?.directory;
    if (facts?.source === 'oidc' && facts.dn !== entry.dn) return refuse('the name belongs to another subject at the provider', entry.username.slice(0, 200));
    const who = await this.accounts.admit(entry, address);
    if (!who) return { ok: false, reason: 'the provider\'s user name cannot be used here' };
    this.audit.record({ who: entry.username, action: 'oidc sign-in', allowed: true, address });
    return { ok: true, who };
  }
}
