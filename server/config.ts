// One typed, validated configuration, read once at start-up from the environment and an optional
// JSON file (BERTH_CONFIG); the environment wins over the file. The settings come in concerns, and each
// program reads only its own: the server (and the commands that open its storage) the server's and S3's,
// the runtime client (berth pull, run, …) the client's, so that a wrong server setting never stops a pull.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BlockList, isIP } from 'node:net';
// zod's v3 API, which zod 4 keeps and maintains: its code is a tenth of v4's (about 80 KB against 850), and
// every process loads it at start, where v4's share of an idle server was about 4 MiB of heap.
import { z } from 'zod/v3';
import type { LdapOptions, OidcOptions } from '../auth/index.ts';
// The mirror room's settings alone, not its door: the rest of the room loads only where mirrors are configured.
import { mirrorsSchema, withoutSecrets } from '../mirror/config.ts';

const LISTEN_RE = /^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const LDAP_URL_RE = /^ldaps?:\/\/(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?\/?$/;
const LDAP_ATTRIBUTE_RE = /^[A-Za-z][A-Za-z0-9-]*$/;

const bool = z.union([
  z.boolean(),
  z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes'),
]);
const httpUrl = () => z.string().url().refine((v) => /^https?:\/\//i.test(v), 'expected an http or https URL');
const int = (min: number) => z.coerce.number().int().min(min);

const serverSettings = {
  listen: z
    .string()
    .regex(LISTEN_RE, 'expected address:port, e.g. 127.0.0.1:5000')
    .refine((v) => Number(LISTEN_RE.exec(v)?.[1]) <= 65535, 'port must be at most 65535'),
  dataDir: z.string().min(1),
  directIo: z.union([z.literal('auto'), bool]),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  deleteEnabled: bool,
  readOnly: bool,
  publicUrl: z.string().url().optional(),
  maxManifestBytes: int(1024),
  chunkMinLength: int(0),
  maxConcurrentUploads: int(0),
  shutdownTimeoutMs: int(0),
  headersTimeoutSeconds: int(1).max(3600),
  idleTimeoutSeconds: int(1).max(3600),
  bodyTimeoutSeconds: int(1).max(3600),
  bodyMinBytesPerSecond: int(0),
  redisUrl: z.string().regex(/^rediss?:\/\//, 'expected redis://host:port or rediss://host:port').optional(),
  redisSentinels: z.string().regex(/^[^,:]+:\d+(,[^,:]+:\d+)*$/, 'expected host:port,host:port').optional(),
  redisSentinelName: z.string().min(1),
  redisCluster: z.string().regex(/^[^,:]+:\d+(,[^,:]+:\d+)*$/, 'expected host:port,host:port').optional(),
  redisKeyPrefix: z.string(),
  workers: int(1).max(256),
  uploadExpirySeconds: int(1),
  rateLimitPerMinute: int(0),
  uploadPurgeIntervalSeconds: int(1),
  expirySweepIntervalSeconds: int(0),
  gcIntervalSeconds: int(0),
  gcGraceSeconds: int(0),
  gcDeleteUntagged: bool,
  retentionIntervalSeconds: int(0),
  controlSocket: z.string().min(1).optional(),
  mode: z.enum(['public-index', 'private', 'open']),
  trustProxy: bool,
  trustedProxyHops: int(1).max(32).optional(),
  trustedProxies: z
    .string()
    .refine((v) => v.split(',').every((entry) => parseCidr(entry.trim()) !== undefined), 'expected addresses or CIDR ranges, e.g. 10.0.0.0/8,192.0.2.7')
    .optional(),
  authService: z.string().min(1),
  authIssuer: z.string().min(1),
  authRealm: z.string().url().optional(),
  tokenTtlSeconds: int(60).max(24 * 3600),
  refreshTokenTtlSeconds: int(60),
  loginFailuresPerAccount: int(1),
  loginFailuresPerAccountAndAddress: int(1),
  loginFailuresPerAddress: int(1),
  loginFailureWindowSeconds: int(1),
  reservedNames: z
    .string()
    .regex(/^[a-z0-9._-]+(,[a-z0-9._-]+)*$/, 'expected lower-case names separated by commas, e.g. library,admin,api')
    .transform((v) => v.split(',')),
  auditLog: z.string().min(1).optional(),
  pullCountFlushSeconds: int(1),
  mirrors: mirrorsSchema,
  webhookAllow: z
    .string()
    .refine((v) => v.split(',').every((entry) => parseCidr(entry.trim()) !== undefined), 'expected addresses or CIDR ranges, e.g. 10.1.2.3,192.168.0.0/16')
    .optional(),
  webhookTimeoutMs: int(100).max(120_000),
  webhookQueueLimit: int(1).max(1_000_000),
  webhookMaxAttempts: int(1).max(1000),
  webhookRetryBaseMs: int(10),
  webhookRetryMaxMs: int(10),
  webhookPollMs: int(50).max(600_000),
  webhookSecretKey: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'expected 32 bytes in base64 (openssl rand -base64 32)')
    .optional(),
  replicationTickSeconds: int(0).max(86_400),
  replicationMaxAttempts: int(1).max(100),
  replicationRetryBaseMs: int(10),
  replicationRetryMaxMs: int(10).max(3_600_000),
  replicationStaleSeconds: int(3).max(3600),
};

const s3Settings = {
  s3Bucket: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/, 'expected a bucket name (3 to 255 letters, digits, ".", "-" or "_")')
    .optional(),
  s3Endpoint: z.string().url().optional(),
  s3Region: z.string().regex(/^[A-Za-z0-9-]+$/, 'expected a region name, e.g. us-east-1'),
  s3Prefix: z
    .string()
    .regex(/^\/?[A-Za-z0-9_~-][A-Za-z0-9._~-]*(\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*\/?$/, 'expected key segments separated by "/", e.g. registry/')
    .optional(),
  s3ForcePathStyle: bool,
  s3PartSize: int(5 * 1024 * 1024).max(5 * 1024 * 1024 * 1024),
  s3RequestTimeoutMs: int(100),
  s3Redirect: bool,
  // Short-lived on purpose: a URL keeps granting a private blob to whoever holds it, access revoked or not.
  s3RedirectTtlSeconds: int(1).max(3600),
  s3RedirectBaseUrl: httpUrl()
    .refine((v) => {
      const url = new URL(v);
      return url.pathname === '/' && url.search === '' && url.hash === '';
    }, 'expected only a scheme and host, e.g. https://cdn.example.com (the presigned path and query are kept)')
    .optional(),
};

/** The directory (LDAP / Active Directory) that checks passwords: gathered into one `ldap` object. */
const ldapSettings = {
  ldapUrl: z.string().regex(LDAP_URL_RE, 'expected ldap://host[:port] or ldaps://host[:port]').optional(),
  ldapStartTls: bool,
  ldapCaFile: z.string().min(1).optional(),
  ldapBindDn: z.string().min(1).optional(),
  ldapBindPassword: z.string().min(1).optional(),
  ldapBindPasswordFile: z.string().min(1).optional(),
  ldapBaseDn: z.string().min(1).optional(),
  ldapUserFilter: z.string().includes('{username}', { message: 'expected a filter with {username}, e.g. (&(objectClass=inetOrgPerson)(uid={username}))' }),
  ldapUsernameAttribute: z.string().regex(LDAP_ATTRIBUTE_RE, 'expected an attribute name, e.g. uid'),
  ldapDisplayNameAttribute: z.string().regex(LDAP_ATTRIBUTE_RE, 'expected an attribute name, e.g. cn'),
  ldapEmailAttribute: z.string().regex(LDAP_ATTRIBUTE_RE, 'expected an attribute name, e.g. mail'),
  ldapGroupBaseDn: z.string().min(1).optional(),
  ldapGroupFilter: z.string().includes('{dn}', { message: 'expected a filter with {dn}, e.g. (&(objectClass=groupOfNames)(member={dn}))' }),
  ldapGroupRoles: z
    .string()
    .refine((v) => parseGroupRoles(v) !== undefined, 'expected GROUP-DN=>ORG:ROLE entries separated by ";", ROLE one of read, write, admin')
    .optional(),
  ldapRefreshSeconds: int(1),
  ldapTimeoutMs: int(100).max(120_000),
};

/** The OpenID Connect provider the browser signs in through: gathered into one `oidc` object. */
const oidcSettings = {
  oidcIssuer: httpUrl()
    .refine((v) => {
      const url = new URL(v);
      return url.protocol === 'https:' || url.hostname === 'localhost' || url.hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(url.hostname);
    }, 'expected an https:// URL (plain http:// only on this machine: localhost, 127.0.0.1, [::1])')
    .optional(),
  oidcName: z.string().min(1).max(60),
  oidcClientId: z.string().min(1).optional(),
  oidcClientSecret: z.string().min(1).optional(),
  oidcClientSecretFile: z.string().min(1).optional(),
  oidcRedirectUrl: httpUrl().optional(),
  oidcScopes: z
    .string()
    .regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'expected scopes separated by single spaces, e.g. openid profile email offline_access')
    .refine((v) => v.split(' ').includes('openid'), 'the scopes must include openid'),
  oidcUsernameClaim: z.string().regex(/^[\w.:-]{1,100}$/, 'expected a claim name, e.g. preferred_username'),
  oidcGroupsClaim: z.string().regex(/^[\w.:-]{1,100}$/, 'expected a claim name, e.g. groups'),
  oidcGroupRoles: z
    .string()
    .refine((v) => parseGroupRoles(v, false) !== undefined, 'expected GROUP=>ORG:ROLE entries separated by ";", ROLE one of read, write, admin')
    .optional(),
  oidcRefreshSeconds: int(1),
  oidcTimeoutMs: int(100).max(120_000),
};

const clientSettings = {
  clientHome: z.string().min(1),
  defaultRegistry: z.string().regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'expected host[:port], e.g. docker.io'),
  insecureRegistries: z
    .string()
    .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?(,[A-Za-z0-9.-]+(:\d{1,5})?)*$/, 'expected host[:port],host[:port]')
    .optional(),
  runtime: z.enum(['auto', 'runc', 'crun', 'unshare']),
  unpackMaxBytes: int(1),
  unpackMaxEntries: int(1),
};

/** Where blobs and manifests live when not in BERTH_DATA: one object, present only with a bucket. */
export interface S3Config {
  bucket: string;
  /** Key prefix inside the bucket. */
  prefix?: string;
  region: string;
  /** For S3-compatible stores; AWS when unset. */
  endpoint?: string;
  forcePathStyle: boolean;
  partSize: number;
  requestTimeoutMs: number;
  /** Present when a blob GET is answered with a redirect to a presigned URL. */
  redirect?: {
    ttlSeconds: number;
    /** scheme://host[:port] of a CDN that replaces the S3 endpoint in redirect URLs. */
    baseUrl?: string;
  };
}

type S3Settings = z.infer<z.ZodObject<typeof s3Settings>>;

function without<T extends object, K extends keyof T>(object: T, keys: readonly K[]): Omit<T, K> {
  const rest = { ...object };
  for (const key of keys) delete rest[key];
  return rest;
}

function s3Config(settings: S3Settings): S3Config | undefined {
  if (settings.s3Bucket === undefined) return undefined;
  return {
    bucket: settings.s3Bucket,
    prefix: settings.s3Prefix,
    region: settings.s3Region,
    endpoint: settings.s3Endpoint,
    forcePathStyle: settings.s3ForcePathStyle,
    partSize: settings.s3PartSize,
    requestTimeoutMs: settings.s3RequestTimeoutMs,
    redirect: settings.s3Redirect ? { ttlSeconds: settings.s3RedirectTtlSeconds, baseUrl: settings.s3RedirectBaseUrl } : undefined,
  };
}

/** The server's configuration: its own settings and S3's, checked together where they need each other. */
const serverSchema = z
  .object({ ...serverSettings, ...s3Settings, ...ldapSettings, ...oidcSettings })
  .superRefine((config, ctx) => {
  const ldapKeys = ['ldapCaFile', 'ldapBindDn', 'ldapBindPassword', 'ldapBindPasswordFile', 'ldapBaseDn', 'ldapGroupBaseDn', 'ldapGroupRoles'] as const;
  if (config.ldapUrl === undefined) {
    for (const key of ldapKeys) if (config[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'has no effect unless BERTH_LDAP_URL is set' });
  } else {
    if (config.ldapBaseDn === undefined) ctx.addIssue({ code: 'custom', path: ['ldapBaseDn'], message: 'the directory needs a base DN to search users under' });
    if (config.ldapBindDn === undefined) ctx.addIssue({ code: 'custom', path: ['ldapBindDn'], message: 'the directory needs a service account to search users with' });
    if ((config.ldapBindPassword === undefined) === (config.ldapBindPasswordFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['ldapBindPassword'], message: 'set the service account\'s password either here or in BERTH_LDAP_BIND_PASSWORD_FILE (one of them)' });
    }
    if (config.ldapStartTls && config.ldapUrl.startsWith('ldaps:')) ctx.addIssue({ code: 'custom', path: ['ldapStartTls'], message: 'ldaps:// is TLS already; StartTLS is for ldap://' });
    if (config.ldapCaFile !== undefined && !config.ldapStartTls && config.ldapUrl.startsWith('ldap:')) {
      ctx.addIssue({ code: 'custom', path: ['ldapCaFile'], message: 'has no effect on plain ldap://: use ldaps:// or BERTH_LDAP_START_TLS=true' });
    }
  }
  const oidcKeys = ['oidcClientId', 'oidcClientSecret', 'oidcClientSecretFile', 'oidcRedirectUrl', 'oidcGroupRoles'] as const;
  if (config.oidcIssuer === undefined) {
    for (const key of oidcKeys) if (config[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'has no effect unless BERTH_OIDC_ISSUER is set' });
  } else {
    if (config.oidcClientId === undefined) ctx.addIssue({ code: 'custom', path: ['oidcClientId'], message: 'the provider needs the client id Berth was registered with' });
    if ((config.oidcClientSecret === undefined) === (config.oidcClientSecretFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['oidcClientSecret'], message: 'set the client secret either here or in BERTH_OIDC_CLIENT_SECRET_FILE (one of them)' });
    }
    if (config.oidcRedirectUrl === undefined && config.publicUrl === undefined) {
      ctx.addIssue({ code: 'custom', path: ['oidcRedirectUrl'], message: 'the provider sends the browser back to an absolute URL: set this, or BERTH_PUBLIC_URL' });
    }
    if (config.mode === 'open') ctx.addIssue({ code: 'custom', path: ['oidcIssuer'], message: 'BERTH_MODE=open has no accounts to sign in to' });
  }

    if (config.s3Redirect && config.s3Bucket === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['s3Redirect'],
        message: 'redirects send clients to presigned S3 URLs, so they need S3 storage: set BERTH_S3_BUCKET, or turn BERTH_S3_REDIRECT off',
      });
    }
    for (const key of ['trustedProxyHops', 'trustedProxies'] as const) {
      if (config[key] !== undefined && !config.trustProxy) ctx.addIssue({ code: 'custom', path: [key], message: 'has no effect unless BERTH_TRUST_PROXY=true' });
    }
    if (config.trustedProxyHops !== undefined && config.trustedProxies !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['trustedProxyHops'], message: 'set either a number of hops or BERTH_TRUSTED_PROXIES, not both' });
    }
    if (config.webhookRetryMaxMs < config.webhookRetryBaseMs) {
      ctx.addIssue({ code: 'custom', path: ['webhookRetryMaxMs'], message: 'must be at least BERTH_WEBHOOK_RETRY_BASE_MS' });
    }
    if (config.replicationRetryMaxMs < config.replicationRetryBaseMs) {
      ctx.addIssue({ code: 'custom', path: ['replicationRetryMaxMs'], message: 'must be at least BERTH_REPLICATION_RETRY_BASE_MS' });
    }
    if (config.directIo === true && config.s3Bucket !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['directIo'], message: 'has no effect with BERTH_S3_BUCKET (blobs are not in BERTH_DATA)' });
    }
    if (config.s3RedirectBaseUrl !== undefined && !config.s3Redirect) {
      ctx.addIssue({ code: 'custom', path: ['s3RedirectBaseUrl'], message: 'has no effect unless BERTH_S3_REDIRECT=true' });
    }
  })
  .transform((settings) => {
    const server = without(settings, [...Object.keys(s3Settings), ...Object.keys(ldapSettings), ...Object.keys(oidcSettings)] as (keyof typeof s3Settings | LdapKey | OidcKey)[]);
    return {
      ...server,
      dataDir: resolve(server.dataDir),
      s3: s3Config(settings),
      ldap: settings.ldapUrl === undefined ? undefined : ldapConfig(settings),
      oidc: settings.oidcIssuer === undefined ? undefined : oidcConfig(settings, settings.publicUrl),
    };
  });

const clientSchema = z.object(clientSettings);

export type Config = z.output<typeof serverSchema>;
/** What the runtime client reads: nothing of the server's. */
export type ClientConfig = z.output<typeof clientSchema>;

type SettingKey = keyof typeof serverSettings | keyof typeof s3Settings | LdapKey | OidcKey | keyof typeof clientSettings;
type OidcKey = keyof typeof oidcSettings;
type OidcSettingValues = z.infer<z.ZodObject<typeof oidcSettings>>;

/** The OpenID provider the browser signs in through, as one typed object (auth's own type) and its display name. */
export type OidcSettings = OidcOptions & { name: string };
type LdapKey = keyof typeof ldapSettings;
type LdapSettingValues = z.infer<z.ZodObject<typeof ldapSettings>>;

/** The directory (LDAP / Active Directory) that checks passwords, as one typed object (auth's own type). */
export type LdapSettings = LdapOptions;

/** Reads a file a setting names; a ConfigError naming the setting when it cannot. */
function readSetting(key: LdapKey | OidcKey, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${SETTINGS[key].env}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function ldapConfig(settings: LdapSettingValues): LdapSettings {
  const password = settings.ldapBindPassword ?? readSetting('ldapBindPasswordFile', settings.ldapBindPasswordFile!).replace(/\r?\n$/, '');
  return {
    url: settings.ldapUrl!,
    startTls: settings.ldapStartTls,
    ca: settings.ldapCaFile === undefined ? undefined : readSetting('ldapCaFile', settings.ldapCaFile),
    timeoutMs: settings.ldapTimeoutMs,
    bindDn: settings.ldapBindDn!,
    bindPassword: () => password,
    baseDn: settings.ldapBaseDn!,
    userFilter: settings.ldapUserFilter,
    usernameAttribute: settings.ldapUsernameAttribute,
    displayNameAttribute: settings.ldapDisplayNameAttribute,
    emailAttribute: settings.ldapEmailAttribute,
    groupBaseDn: settings.ldapGroupBaseDn ?? settings.ldapBaseDn!,
    groupFilter: settings.ldapGroupFilter,
    groupRoles: parseGroupRoles(settings.ldapGroupRoles ?? '') ?? [],
    refreshSeconds: settings.ldapRefreshSeconds,
  };
}

function oidcConfig(settings: OidcSettingValues, publicUrl: string | undefined): OidcSettings {
  const secret = settings.oidcClientSecret ?? readSetting('oidcClientSecretFile', settings.oidcClientSecretFile!).replace(/\r?\n$/, '');
  return {
    name: settings.oidcName,
    issuer: settings.oidcIssuer!,
    clientId: settings.oidcClientId!,
    clientSecret: () => secret,
    redirectUrl: settings.oidcRedirectUrl ?? new URL('/signin/oidc/callback', publicUrl).href,
    scopes: settings.oidcScopes,
    usernameClaim: settings.oidcUsernameClaim,
    groupsClaim: settings.oidcGroupsClaim,
    groupRoles: parseGroupRoles(settings.oidcGroupRoles ?? '', false) ?? [],
    refreshSeconds: settings.oidcRefreshSeconds,
    timeoutMs: settings.oidcTimeoutMs,
  };
}

/** `GROUP=>ORG:ROLE;…` as a list, or undefined when an entry is not of that form (a directory's groups are DNs). */
function parseGroupRoles(text: string, dn = true): LdapSettings['groupRoles'] | undefined {
  const entries = text.split(';').map((e) => e.trim()).filter(Boolean);
  const parsed = entries.map((entry) => /^(.+?)\s*=>\s*([a-z0-9]+(?:[._-][a-z0-9]+)*):(read|write|admin)$/.exec(entry));
  if (parsed.some((m) => !m || (dn && !/=/.test(m[1]!)))) return undefined;
  return parsed.map((m) => ({ group: m![1]!, organisation: m![2]!, role: m![3] as 'read' | 'write' | 'admin' }));
}

/** Words that name the registry's own paths and roles, or would pass for them: nobody's namespace. */
const RESERVED_NAMES = [
  'library', 'admin', 'administrator', 'root', 'berth', 'registry', 'official', 'system', 'security', 'support',
  'api', 'v1', 'v2', 'token', 'static', 'images', 'card', 'healthz', 'metrics', 'well-known', 'www',
  'signin', 'signup', 'signout', 'login', 'logout', 'settings', 'search', 'mine', 'help', 'about', 'docs',
  'anonymous', 'null', 'undefined',
].join(',');

/** Each setting, the environment variable that sets it, and its default: the README table comes from here. */
export const SETTINGS: Record<SettingKey, { env: string; default?: string; help: string; secret?: true }> = {
  listen: { env: 'BERTH_LISTEN', default: '127.0.0.1:5000', help: 'address:port to serve on' },
  dataDir: { env: 'BERTH_DATA', default: './data', help: 'folder for blobs, manifests and upload sessions' },
  directIo: {
    env: 'BERTH_DIRECT_IO',
    default: 'auto',
    help: 'write large blobs in BERTH_DATA with O_DIRECT (true) or through the page cache (false); auto writes directly while two or more large writes are under way, and for a lone one measures the kernel CPU the page cache costs per MiB and writes directly while it is high (some virtual machines), rechecking from time to time (ignored where the filesystem refuses O_DIRECT)',
  },
  logLevel: { env: 'BERTH_LOG_LEVEL', default: 'info', help: 'pino log level (silent to turn logs off)' },
  deleteEnabled: { env: 'BERTH_DELETE_ENABLED', default: 'true', help: 'allow DELETE of manifests, tags and blobs' },
  readOnly: { env: 'BERTH_READ_ONLY', default: 'false', help: 'refuse every write with DENIED (maintenance mode)' },
  publicUrl: { env: 'BERTH_PUBLIC_URL', help: 'absolute base URL for Location headers (relative when unset)' },
  maxManifestBytes: { env: 'BERTH_MAX_MANIFEST_BYTES', default: String(4 * 1024 * 1024), help: 'largest manifest accepted' },
  chunkMinLength: { env: 'BERTH_CHUNK_MIN_LENGTH', default: '0', help: 'minimum PATCH chunk size announced as OCI-Chunk-Min-Length (0: none)' },
  maxConcurrentUploads: {
    env: 'BERTH_MAX_CONCURRENT_UPLOADS',
    default: '0',
    help: 'upload requests streamed at once before TOO_MANY_REQUESTS (0: no limit)',
  },
  shutdownTimeoutMs: { env: 'BERTH_SHUTDOWN_TIMEOUT_MS', default: '30000', help: 'how long in-flight requests may finish on SIGTERM' },
  headersTimeoutSeconds: {
    env: 'BERTH_HEADERS_TIMEOUT_SECONDS',
    default: '30',
    help: 'a connection that has not sent a whole request head (line and headers) this long after it began one, or after it opened, is answered 408 and closed',
  },
  idleTimeoutSeconds: {
    env: 'BERTH_IDLE_TIMEOUT_SECONDS',
    default: '65',
    help: 'a keep-alive connection idle this long between requests is closed (keep it above the load balancer\'s own idle timeout)',
  },
  bodyTimeoutSeconds: {
    env: 'BERTH_BODY_TIMEOUT_SECONDS',
    default: '30',
    help: 'a request body that brings fewer than BERTH_BODY_MIN_BYTES_PER_SECOND × this many bytes (at least one) in any such window the server waits for it is answered 408 and cut; a long upload that keeps moving is never cut',
  },
  bodyMinBytesPerSecond: {
    env: 'BERTH_BODY_MIN_BYTES_PER_SECOND',
    default: '256',
    help: 'the slowest average rate, over each BERTH_BODY_TIMEOUT_SECONDS window, at which a request body may arrive (0: any progress at all)',
  },
  redisUrl: { env: 'BERTH_REDIS_URL', help: 'Redis for state shared by several processes or replicas (locks, cache generations)' },
  redisSentinels: { env: 'BERTH_REDIS_SENTINELS', help: 'host:port list of Redis Sentinels (instead of BERTH_REDIS_URL)' },
  redisSentinelName: { env: 'BERTH_REDIS_SENTINEL_NAME', default: 'mymaster', help: 'the master name the Sentinels watch' },
  redisCluster: { env: 'BERTH_REDIS_CLUSTER', help: 'host:port list of Redis Cluster nodes (instead of BERTH_REDIS_URL)' },
  redisKeyPrefix: { env: 'BERTH_REDIS_PREFIX', default: 'berth:', help: 'prefix of every key Berth writes in Redis' },
  rateLimitPerMinute: {
    env: 'BERTH_RATE_LIMIT_PER_MINUTE',
    default: '0',
    help: 'requests to /v2 per client address and minute before 429 TOO_MANY_REQUESTS, counted across every process (0: no limit)',
  },
  uploadExpirySeconds: {
    env: 'BERTH_UPLOAD_EXPIRY_SECONDS',
    default: String(24 * 3600),
    help: 'an upload session older than this is removed with its data (on S3, its multipart upload is aborted)',
  },
  uploadPurgeIntervalSeconds: {
    env: 'BERTH_UPLOAD_PURGE_INTERVAL_SECONDS',
    default: '3600',
    help: 'how often expired upload sessions are looked for',
  },
  expirySweepIntervalSeconds: {
    env: 'BERTH_EXPIRY_SWEEP_INTERVAL_SECONDS',
    default: '3600',
    help: 'how often expired browser sessions and refresh tokens, and stale social cards, are removed (each run reads at most 1,000 of each); 0: never',
  },
  gcIntervalSeconds: {
    env: 'BERTH_GC_INTERVAL_SECONDS',
    default: String(24 * 3600),
    help: 'how often the server collects garbage (daily by default, so a default install reclaims what deletes and retention left): once per interval across all workers and replicas; 0: never',
  },
  gcGraceSeconds: {
    env: 'BERTH_GC_GRACE_SECONDS',
    default: '3600',
    help: 'blobs and untagged manifests stored less than this long ago are never collected',
  },
  gcDeleteUntagged: { env: 'BERTH_GC_DELETE_UNTAGGED', default: 'false', help: 'scheduled collections also remove manifests no tag reaches' },
  retentionIntervalSeconds: {
    env: 'BERTH_RETENTION_INTERVAL_SECONDS',
    default: String(24 * 3600),
    help: 'how often the server applies the retention policies (deleting the tags they do not keep); daily by default; 0: never',
  },
  controlSocket: {
    env: 'BERTH_CONTROL_SOCKET',
    help: 'Unix socket (mode 0600) through which `berth gc` and `berth retention run` hand their job to this running server (default: control.sock in BERTH_DATA; "none": no socket)',
  },
  workers: { env: 'BERTH_WORKERS', default: '1', help: 'processes serving one port; 1 serves from a single process, more fork workers (node:cluster)' },
  s3Bucket: {
    env: 'BERTH_S3_BUCKET',
    help: 'store everything in this S3 bucket instead of BERTH_DATA (credentials: the AWS SDK default chain)',
  },
  s3Endpoint: { env: 'BERTH_S3_ENDPOINT', help: 'S3 endpoint URL for S3-compatible stores (AWS when unset)' },
  s3Region: { env: 'BERTH_S3_REGION', default: 'us-east-1', help: 'S3 region' },
  s3Prefix: { env: 'BERTH_S3_PREFIX', help: 'key prefix inside the bucket (several registries can share one bucket)' },
  s3ForcePathStyle: { env: 'BERTH_S3_FORCE_PATH_STYLE', default: 'false', help: 'path-style S3 URLs (endpoint/bucket/key), as most S3-compatible stores need' },
  s3PartSize: {
    env: 'BERTH_S3_PART_SIZE',
    default: String(16 * 1024 * 1024),
    help: 'size of the first 1000 parts of an upload to S3 (then doubling every 1000 parts); at least 5 MiB',
  },
  s3RequestTimeoutMs: {
    env: 'BERTH_S3_REQUEST_TIMEOUT_MS',
    default: '60000',
    help: 'an S3 request whose connection stays silent this long fails (idempotent ones are retried)',
  },
  s3Redirect: {
    env: 'BERTH_S3_REDIRECT',
    default: 'false',
    help: 'answer a blob GET the caller may pull with 307 to a presigned S3 URL, so the bytes do not pass through Berth (needs BERTH_S3_BUCKET)',
  },
  s3RedirectTtlSeconds: {
    env: 'BERTH_S3_REDIRECT_TTL_SECONDS',
    default: '300',
    help: 'how long a redirect URL stays valid (1 to 3600); a download begun in time may run longer',
  },
  s3RedirectBaseUrl: {
    env: 'BERTH_S3_REDIRECT_BASE_URL',
    help: 'scheme://host[:port] of a CDN in front of the bucket: replaces the S3 endpoint in redirect URLs, path and query kept',
  },
  mode: {
    env: 'BERTH_MODE',
    default: 'public-index',
    help: 'public-index: anonymous pull and catalog of public repositories, open sign-up, new repositories public; private: every request authenticated, no sign-up, new repositories private; open: no authentication at all (a local development registry)',
  },
  trustProxy: {
    env: 'BERTH_TRUST_PROXY',
    default: 'false',
    help: 'behind a load balancer: take the client address and protocol from X-Forwarded-For / X-Forwarded-Proto (rate limits, login limits, audit, the token realm); by default the proxy in front is one hop: the rightmost X-Forwarded-For entry is the client. X-Forwarded-Host is never read',
  },
  trustedProxyHops: {
    env: 'BERTH_TRUSTED_PROXY_HOPS',
    help: 'with BERTH_TRUST_PROXY: how many proxies in a row append to X-Forwarded-For; the client is that many entries from the right (default 1)',
  },
  trustedProxies: {
    env: 'BERTH_TRUSTED_PROXIES',
    help: 'with BERTH_TRUST_PROXY, instead of a hop count: the addresses or CIDR ranges of the proxies; forwarded headers are read only from them, and the client is the rightmost X-Forwarded-For entry that is not one of them',
  },
  authService: { env: 'BERTH_AUTH_SERVICE', default: 'berth', help: 'the service name in the Bearer challenge and the tokens\' audience' },
  authIssuer: { env: 'BERTH_AUTH_ISSUER', default: 'berth', help: 'the tokens\' issuer (iss)' },
  authRealm: { env: 'BERTH_AUTH_REALM', help: 'absolute URL of the token endpoint in the Bearer challenge (default: BERTH_PUBLIC_URL or the request\'s host, + /token)' },
  tokenTtlSeconds: { env: 'BERTH_TOKEN_TTL_SECONDS', default: '300', help: 'lifetime of a bearer token (60 to 86400)' },
  refreshTokenTtlSeconds: { env: 'BERTH_REFRESH_TOKEN_TTL_SECONDS', default: String(30 * 24 * 3600), help: 'lifetime of a refresh token (offline_token=true)' },
  loginFailuresPerAccount: {
    env: 'BERTH_LOGIN_FAILURES_PER_ACCOUNT',
    default: '10',
    help: 'failed password logins for one account from all addresses within the window before its password logins get 429 TOO_MANY_REQUESTS, except from addresses it signed in from in the last 30 days (tokens and robots are never counted here)',
  },
  loginFailuresPerAccountAndAddress: {
    env: 'BERTH_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS',
    default: '10',
    help: 'failed logins for one account from one address within the window before that address gets 429 TOO_MANY_REQUESTS for it',
  },
  loginFailuresPerAddress: { env: 'BERTH_LOGIN_FAILURES_PER_ADDRESS', default: '50', help: 'failed logins from one address within the window before 429 TOO_MANY_REQUESTS' },
  loginFailureWindowSeconds: { env: 'BERTH_LOGIN_FAILURE_WINDOW_SECONDS', default: '900', help: 'the window failed logins are counted in' },
  reservedNames: {
    env: 'BERTH_RESERVED_NAMES',
    default: RESERVED_NAMES,
    help: 'names (comma-separated) no one can sign up for or be given as a user or organisation, nor any name that differs from one only by dots, dashes or underscores; library always is',
  },
  auditLog: { env: 'BERTH_AUDIT_LOG', help: 'file the audit log (every auth decision, one JSON line each) is appended to (default: the server log)' },
  pullCountFlushSeconds: { env: 'BERTH_PULL_COUNT_FLUSH_SECONDS', default: '10', help: 'how often pull counts (kept in memory per process) are added to the catalog\'s search index' },
  mirrors: {
    env: 'BERTH_MIRRORS',
    default: '[]',
    help: 'pull-through caches, as JSON: [{"prefix": "docker.io", "upstream": "https://registry-1.docker.io", "username", "password", "realms": [other token realm origins the credentials may go to], "tagTtlSeconds": 300, "maxBytes", "dockerMirror": false, "timeoutSeconds": 30}]; GET /v2/<prefix>/<name>/… pulls <name> through the upstream (see Pull-through cache)',
  },
  webhookAllow: {
    env: 'BERTH_WEBHOOK_ALLOW',
    help: 'addresses or CIDR ranges webhooks may reach although they are private, loopback or link-local (refused otherwise, checked again at each connection)',
  },
  webhookTimeoutMs: { env: 'BERTH_WEBHOOK_TIMEOUT_MS', default: '10000', help: 'how long one webhook delivery may take, connection included, before it counts as failed' },
  webhookQueueLimit: {
    env: 'BERTH_WEBHOOK_QUEUE_LIMIT',
    default: '1000',
    help: 'events waiting for one webhook endpoint (in storage); an event beyond it is dropped, and the drop recorded in the endpoint\'s log',
  },
  webhookMaxAttempts: { env: 'BERTH_WEBHOOK_MAX_ATTEMPTS', default: '10', help: 'deliveries of one event tried before it is dropped (the drop recorded in the endpoint\'s log)' },
  webhookRetryBaseMs: { env: 'BERTH_WEBHOOK_RETRY_BASE_MS', default: '2000', help: 'wait after a webhook\'s first failed delivery; it doubles with each failure' },
  webhookRetryMaxMs: { env: 'BERTH_WEBHOOK_RETRY_MAX_MS', default: '600000', help: 'the longest wait between two deliveries of one webhook event' },
  webhookPollMs: { env: 'BERTH_WEBHOOK_POLL_MS', default: '1000', help: 'how often a server looks for webhook events queued by other processes (its own are sent at once)' },
  webhookSecretKey: {
    env: 'BERTH_WEBHOOK_SECRET_KEY',
    help: 'key (32 bytes, base64) that seals webhook secrets, OpenID refresh tokens and replication rules\' remote passwords in storage; unset: a key made once and kept in storage beside the token signing key',
  },
  replicationTickSeconds: {
    env: 'BERTH_REPLICATION_TICK_SECONDS',
    default: '30',
    help: 'how often a server looks for replication rules whose schedule is due or whose run was interrupted (0: never; manual and on-push runs still happen)',
  },
  replicationMaxAttempts: { env: 'BERTH_REPLICATION_MAX_ATTEMPTS', default: '5', help: 'tries of one replication request that meets 429, a 5xx or no answer, before the run stops' },
  replicationRetryBaseMs: { env: 'BERTH_REPLICATION_RETRY_BASE_MS', default: '1000', help: 'wait after a replication request\'s first 429/5xx without Retry-After; it doubles with each failure' },
  replicationRetryMaxMs: { env: 'BERTH_REPLICATION_RETRY_MAX_MS', default: '60000', help: 'the longest wait between two tries of a replication request (a longer Retry-After stops the run)' },
  replicationStaleSeconds: {
    env: 'BERTH_REPLICATION_STALE_SECONDS',
    default: '30',
    help: 'a replication run whose process has not said it is alive for this long counts as interrupted: it may be resumed (by the schedule tick or berth replication run)',
  },
  ldapUrl: {
    env: 'BERTH_LDAP_URL',
    help: 'ldap://host[:port] or ldaps://host[:port] of an LDAP directory or Active Directory that checks the passwords of users who have no local account (unset: local accounts only)',
  },
  ldapStartTls: { env: 'BERTH_LDAP_START_TLS', default: 'false', help: 'upgrade an ldap:// connection with StartTLS before anything is sent (the certificate is verified)' },
  ldapCaFile: { env: 'BERTH_LDAP_CA_FILE', help: 'PEM file of the certificates that may sign the directory\'s certificate (default: the system\'s)' },
  ldapBindDn: { env: 'BERTH_LDAP_BIND_DN', help: 'DN of the service account that searches users and groups, e.g. cn=berth,ou=services,dc=example,dc=org' },
  ldapBindPassword: { env: 'BERTH_LDAP_BIND_PASSWORD', help: 'the service account\'s password (never logged); or BERTH_LDAP_BIND_PASSWORD_FILE', secret: true },
  ldapBindPasswordFile: { env: 'BERTH_LDAP_BIND_PASSWORD_FILE', help: 'file holding the service account\'s password (a trailing newline is dropped)' },
  ldapBaseDn: { env: 'BERTH_LDAP_BASE_DN', help: 'where users are searched (the whole subtree), e.g. ou=people,dc=example,dc=org' },
  ldapUserFilter: {
    env: 'BERTH_LDAP_USER_FILTER',
    default: '(&(objectClass=inetOrgPerson)(uid={username}))',
    help: 'finds the user by the name they typed ({username}, escaped); a user it does not find has no access, so put the disabled test here (Active Directory: (&(objectClass=user)(sAMAccountName={username})(!(userAccountControl:1.2.840.113556.1.4.803:=2))))',
  },
  ldapUsernameAttribute: { env: 'BERTH_LDAP_USERNAME_ATTRIBUTE', default: 'uid', help: 'attribute whose value (in lower case) is the Berth user name (Active Directory: sAMAccountName)' },
  ldapDisplayNameAttribute: { env: 'BERTH_LDAP_DISPLAY_NAME_ATTRIBUTE', default: 'cn', help: 'attribute kept as the user\'s display name (Active Directory: displayName)' },
  ldapEmailAttribute: { env: 'BERTH_LDAP_EMAIL_ATTRIBUTE', default: 'mail', help: 'attribute kept as the user\'s e-mail address' },
  ldapGroupBaseDn: { env: 'BERTH_LDAP_GROUP_BASE_DN', help: 'where groups are searched (default: BERTH_LDAP_BASE_DN)' },
  ldapGroupFilter: {
    env: 'BERTH_LDAP_GROUP_FILTER',
    default: '(&(objectClass=groupOfNames)(member={dn}))',
    help: 'finds the groups of the user whose DN is {dn} (escaped); Active Directory, nested groups too: (member:1.2.840.113556.1.4.1941:={dn})',
  },
  ldapGroupRoles: {
    env: 'BERTH_LDAP_GROUP_ROLES',
    help: 'directory groups → organisation roles: GROUP-DN=>ORG:ROLE entries separated by ";", e.g. cn=dev,ou=groups,dc=example,dc=org=>acme:write; a directory user\'s role in each organisation named here is the highest its groups give, or none (an organisation named here is made when first needed)',
  },
  ldapRefreshSeconds: {
    env: 'BERTH_LDAP_REFRESH_SECONDS',
    default: '300',
    help: 'a directory user\'s entry and groups are read again at each sign-in and, for refresh tokens, access tokens and sessions in use, when older than this; a user the directory no longer finds is removed with their tokens',
  },
  ldapTimeoutMs: { env: 'BERTH_LDAP_TIMEOUT_MS', default: '5000', help: 'how long a directory connection or operation may take before the sign-in answers 503' },
  oidcIssuer: {
    env: 'BERTH_OIDC_ISSUER',
    help: 'issuer URL of an OpenID Connect provider the web sign-in offers (its /.well-known/openid-configuration is read); its users get an account at their first sign-in and use personal access tokens for docker login (unset: no OpenID sign-in)',
  },
  oidcName: { env: 'BERTH_OIDC_NAME', default: 'OpenID Connect', help: 'the provider\'s name on the sign-in page ("Sign in with …")' },
  oidcClientId: { env: 'BERTH_OIDC_CLIENT_ID', help: 'the client id Berth is registered with at the provider' },
  oidcClientSecret: { env: 'BERTH_OIDC_CLIENT_SECRET', help: 'the client\'s secret (never logged); or BERTH_OIDC_CLIENT_SECRET_FILE', secret: true },
  oidcClientSecretFile: { env: 'BERTH_OIDC_CLIENT_SECRET_FILE', help: 'file holding the client\'s secret (a trailing newline is dropped)' },
  oidcRedirectUrl: {
    env: 'BERTH_OIDC_REDIRECT_URL',
    help: 'where the provider sends the browser back (register it there): default BERTH_PUBLIC_URL + /signin/oidc/callback',
  },
  oidcScopes: {
    env: 'BERTH_OIDC_SCOPES',
    default: 'openid profile email offline_access',
    help: 'scopes asked for, separated by spaces; openid is required, and the provider must issue a refresh token (offline_access on most), or the sign-in is refused',
  },
  oidcUsernameClaim: { env: 'BERTH_OIDC_USERNAME_CLAIM', default: 'preferred_username', help: 'claim whose value (in lower case) is the Berth user name (from the ID token, else userinfo)' },
  oidcGroupsClaim: { env: 'BERTH_OIDC_GROUPS_CLAIM', default: 'groups', help: 'claim listing the user\'s groups (a list of names, or one name)' },
  oidcGroupRoles: {
    env: 'BERTH_OIDC_GROUP_ROLES',
    help: 'provider groups → organisation roles: GROUP=>ORG:ROLE entries separated by ";", e.g. dev=>acme:write; as for BERTH_LDAP_GROUP_ROLES, a user\'s role in each organisation named is the highest their groups give, or none',
  },
  oidcRefreshSeconds: {
    env: 'BERTH_OIDC_REFRESH_SECONDS',
    default: '300',
    help: 'a provider user\'s claims and groups are asked again with their refresh token when older than this, for tokens and sessions in use; a refused refresh (the user or the grant gone) removes the user with their tokens',
  },
  oidcTimeoutMs: { env: 'BERTH_OIDC_TIMEOUT_MS', default: '5000', help: 'how long a request to the provider may take before the sign-in (or the token in use) answers 503' },
  clientHome: { env: 'BERTH_HOME', default: '~/.local/share/berth', help: 'the client\'s local store: blobs, images, containers, credentials' },
  defaultRegistry: { env: 'BERTH_DEFAULT_REGISTRY', default: 'docker.io', help: 'registry of names without a host (berth pull busybox)' },
  insecureRegistries: { env: 'BERTH_INSECURE_REGISTRIES', help: 'host[:port] list the client reaches over plain HTTP (loopback always is)' },
  runtime: { env: 'BERTH_RUNTIME', default: 'auto', help: 'what berth run starts containers with: runc, crun, unshare, or auto (the first installed)' },
  unpackMaxBytes: {
    env: 'BERTH_UNPACK_MAX_BYTES',
    default: String(64 * 1024 ** 3),
    help: 'uncompressed bytes all layers of one image may unpack to in berth run (a small gzip layer can expand to fill the disk)',
  },
  unpackMaxEntries: { env: 'BERTH_UNPACK_MAX_ENTRIES', default: '2000000', help: 'tar entries all layers of one image may hold in berth run' },
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The server's configuration (its settings and S3's); a wrong one throws ConfigError naming each variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return validated(serverSchema, { ...serverSettings, ...s3Settings, ...ldapSettings, ...oidcSettings }, env);
}

/** The runtime client's configuration: its settings alone, whatever the server's say. */
export function loadClientConfig(env: NodeJS.ProcessEnv = process.env): ClientConfig {
  return validated(clientSchema, clientSettings, env);
}

/** The given settings, from the environment, else BERTH_CONFIG's file, else their defaults, through `schema`. */
function validated<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, settings: Partial<Record<SettingKey, unknown>>, env: NodeJS.ProcessEnv): T {
  let fromFile: Record<string, unknown> = {};
  if (env.BERTH_CONFIG) {
    try {
      fromFile = JSON.parse(readFileSync(env.BERTH_CONFIG, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`BERTH_CONFIG: cannot read ${env.BERTH_CONFIG}: ${(err as Error).message}`);
    }
  }
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(settings) as SettingKey[]) {
    const setting = SETTINGS[key];
    const value = env[setting.env] ?? fromFile[key] ?? setting.default;
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0]) as SettingKey;
      const setting = SETTINGS[key];
      const value = key === 'mirrors' ? withoutSecrets(raw[key]) : raw[key];
      const given = value === undefined ? 'nothing' : setting?.secret ? 'a value, not shown' : JSON.stringify(value);
      const within = issue.path.slice(1).map((p) => `[${String(p)}]`).join('');
      return `${setting ? setting.env : key}${within}: ${issue.message} (got ${given})`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return parsed.data;
}

/** Where the control socket is, or undefined when it is turned off. */
export function controlSocketPath(config: Config): string | undefined {
  if (config.controlSocket === 'none') return undefined;
  return config.controlSocket ? resolve(config.controlSocket) : join(config.dataDir, 'control.sock');
}

/** Whether several processes share state through Redis (else this process is the only writer). */
export function usesRedis(config: Config): boolean {
  return Boolean(config.redisUrl || config.redisSentinels || config.redisCluster);
}

/** An address or CIDR range (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`), or undefined when it is neither. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', prefixText, extra] = text.split('/');
  const version = isIP(address);
  if (version === 0 || extra !== undefined) return undefined;
  const bits = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** The ranges of BERTH_TRUSTED_PROXIES (validated by the schema), as a list addresses are checked against. */
export function trustedProxyList(config: Config): BlockList | undefined {
  return config.trustedProxies === undefined ? undefined : rangeList(config.trustedProxies);
}

/** A validated list of addresses and CIDR ranges (BERTH_TRUSTED_PROXIES, BERTH_WEBHOOK_ALLOW) as a BlockList. */
export function rangeList(ranges: string): BlockList {
  const list = new BlockList();
  for (const entry of ranges.split(',')) {
    const range = parseCidr(entry.trim())!;
    list.addSubnet(range.address, range.prefix, range.family);
  }
  return list;
}

export function listenAddress(config: Config): { host: string; port: number } {
  const colon = config.listen.lastIndexOf(':');
  return { host: config.listen.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(config.listen.slice(colon + 1)) };
}
