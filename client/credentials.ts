// Registry credentials: `berth login` keeps them in one file only the user can read (mode 0600, in
// docker's config.json shape), and docker's own ~/.docker/config.json is read when present, as docker
// reads it: a registry's credential helper (`credHelpers`), else the default one (`credsStore`), else
// `auths`.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ClientError } from './errors.ts';
import { DOCKER_HUB, normalizeRegistry } from './reference.ts';

export interface Credentials {
  username: string;
  password: string;
  /**
   * An OAuth2 refresh token in place of the password: what `docker login` keeps (`identitytoken`) when the
   * registry's token service gave one, as Berth's does. Tokens are then asked for with it (POST, grant_type
   * refresh_token).
   */
  identityToken?: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [other: string]: unknown;
}

/** How long a credential helper (which may ask a keychain) may take. */
const HELPER_TIMEOUT_MS = 30_000;

/** Docker files Hub credentials under its old index URL. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

/** The registry host a config.json key names: keys may be hosts or URLs (https://host/v1/). */
function keyHost(key: string): string {
  if (key === DOCKER_HUB_KEY) return DOCKER_HUB;
  return normalizeRegistry(key.replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, ''));
}

function readAuthFile(path: string): AuthFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  try {
    return JSON.parse(text) as AuthFile;
  } catch {
    throw new ClientError(`${path} is not valid JSON`);
  }
}

function decode(entry: AuthEntry): Credentials | undefined {
  const text = entry.auth ? Buffer.from(entry.auth, 'base64').toString('utf8') : '';
  const colon = text.indexOf(':');
  const username = entry.username ?? (colon > 0 ? text.slice(0, colon) : '');
  // docker keeps the user name beside an identity token, with an empty password.
  if (entry.identitytoken) return { username, password: '', identityToken: entry.identitytoken };
  const password = entry.password ?? (colon > 0 ? text.slice(colon + 1) : '');
  return username && password ? { username, password } : undefined;
}

function fromAuths(file: AuthFile, host: string): Credentials | undefined {
  for (const [key, entry] of Object.entries(file.auths ?? {})) {
    if (keyHost(key) === host) {
      const credentials = decode(entry);
      if (credentials) return credentials;
    }
  }
  return undefined;
}

/**
 * Asks a docker credential helper (`docker-credential-<name> get`, the server on stdin, JSON on stdout).
 * A helper that knows no credentials for the server says so and exits 1 (some print empty ones instead).
 */
function fromHelper(name: string, server: string): Credentials | undefined {
  const program = `docker-credential-${name}`;
  const run = spawnSync(program, ['get'], { input: server, encoding: 'utf8', timeout: HELPER_TIMEOUT_MS });
  if (run.error) {
    const missing = (run.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ClientError(
      missing
        ? `docker's config.json names the credential helper ${program}, which is not installed (or not on PATH)`
        : `the credential helper ${program} failed: ${run.error.message}`,
    );
  }
  if (run.status !== 0) {
    if (/credentials not found/i.test(`${run.stdout}${run.stderr}`)) return undefined;
    throw new ClientError(`the credential helper ${program} failed (exit ${run.status}): ${(run.stderr || run.stdout).trim().slice(0, 300)}`);
  }
  let answer: { Username?: string; Secret?: string };
  try {
    answer = JSON.parse(run.stdout) as { Username?: string; Secret?: string };
  } catch {
    throw new ClientError(`the credential helper ${program} answered something that is not JSON`);
  }
  if (!answer.Username || !answer.Secret) return undefined;
  // Username "<token>" is how helpers mark an identity token (an OAuth refresh token).
  if (answer.Username === '<token>') return { username: '', password: '', identityToken: answer.Secret };
  return { username: answer.Username, password: answer.Secret };
}

export class CredentialStore {
  /**
   * @param file berth's own credentials file
   * @param dockerConfig docker's config.json, read only (DOCKER_CONFIG/config.json or ~/.docker/config.json)
   */
  constructor(
    readonly file: string,
    readonly dockerConfig: string = join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json'),
  ) {}

  /** Credentials for a registry host: berth's own first, then docker's. */
  get(registry: string): Credentials | undefined {
    const host = normalizeRegistry(registry);
    const own = fromAuths(readAuthFile(this.file), host);
    if (own) return own;
    const docker = readAuthFile(this.dockerConfig);
    const helper = Object.entries(docker.credHelpers ?? {}).find(([key]) => keyHost(key) === host)?.[1] ?? docker.credsStore;
    return (helper ? fromHelper(helper, host === DOCKER_HUB ? DOCKER_HUB_KEY : host) : undefined) ?? fromAuths(docker, host);
  }

  /** Stores credentials, replacing the file atomically; the file is created with mode 0600. */
  set(registry: string, credentials: Credentials): void {
    const host = normalizeRegistry(registry);
    const content = readAuthFile(this.file);
    const auths = Object.fromEntries(Object.entries(content.auths ?? {}).filter(([key]) => keyHost(key) !== host));
    auths[host === DOCKER_HUB ? DOCKER_HUB_KEY : host] = {
      auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64'),
    };
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const temp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temp, `${JSON.stringify({ ...content, auths }, null, 2)}\n`, { mode: 0o600 });
    chmodSync(temp, 0o600); // whatever the umask or an older file said
    renameSync(temp, this.file);
  }
}
