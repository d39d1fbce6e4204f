// Registry credentials: `berth login` keeps them in one file only the user can read (mode 0600, in
// docker's config.json shape), and docker's own ~/.docker/config.json `auths` are read when present.
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ClientError } from './errors.ts';
import { DOCKER_HUB, normalizeRegistry } from './reference.ts';

export interface Credentials {
  username: string;
  password: string;
}

interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  [other: string]: unknown;
}

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

function decode(entry: { auth?: string; username?: string; password?: string }): Credentials | undefined {
  if (entry.username && entry.password) return { username: entry.username, password: entry.password };
  if (!entry.auth) return undefined;
  const text = Buffer.from(entry.auth, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon > 0 ? { username: text.slice(0, colon), password: text.slice(colon + 1) } : undefined;
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
    for (const path of [this.file, this.dockerConfig]) {
      for (const [key, entry] of Object.entries(readAuthFile(path).auths ?? {})) {
        if (keyHost(key) === host) {
          const credentials = decode(entry);
          if (credentials) return credentials;
        }
      }
    }
    return undefined;
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
