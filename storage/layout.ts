// Where each fact lives in storage, in one place. Names and digests arrive here already validated.
import type { LinkPlace } from './links.ts';
import type { Digest } from './reference.ts';

const REPOSITORIES = '/repositories';
const repo = (name: string) => `${REPOSITORIES}/${name}`;
const SEARCH_DOCUMENT = '.json';

export const layout = {
  /** Every blob's folder, by algorithm and the first two hex digits. */
  blobsDir: '/blobs',
  blobDir: (d: Digest) => `/blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`,
  blobData: (d: Digest) => `/blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/data`,
  /** Reverse index: which repositories hold a blob (for mounts without `from`, and for GC). */
  blobHolders: (d: Digest) => `/blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/holders`,
  blobHolder: (d: Digest, name: string) =>
    `/blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/holders/${encodeName(name)}`,
  /** This repository may serve the blob (storage/links.ts; versions before 12-03: `<hex>/link`). */
  layerLink: (name: string, d: Digest): LinkPlace => ({
    file: `${repo(name)}/_layers/${d.algorithm}/${d.hex}`,
    inFolder: `${repo(name)}/_layers/${d.algorithm}/${d.hex}/link`,
  }),
  layersOf: (name: string) => `${repo(name)}/_layers`,
  /** Every repository's folder; nested names nest their folders. */
  repositoriesDir: REPOSITORIES,
  repositoryDir: (name: string) => repo(name),
  revision: (name: string, d: Digest) => `${repo(name)}/_manifests/revisions/${d.algorithm}/${d.hex}/meta`,
  revisionDir: (name: string, d: Digest) => `${repo(name)}/_manifests/revisions/${d.algorithm}/${d.hex}`,
  revisionsOf: (name: string, algorithm: string) => `${repo(name)}/_manifests/revisions/${algorithm}`,
  revisionsDir: (name: string) => `${repo(name)}/_manifests/revisions`,
  /** Markers of the tags that named a revision (a superset: each is checked against its tag's link). */
  tagMarkers: (name: string, d: Digest) => `${repo(name)}/_manifests/revisions/${d.algorithm}/${d.hex}/tags`,
  tagMarker: (name: string, d: Digest, tag: string) => `${repo(name)}/_manifests/revisions/${d.algorithm}/${d.hex}/tags/${tag}`,
  tagsDir: (name: string) => `${repo(name)}/_manifests/tags`,
  /** A tag's link, holding the digest it names (storage/links.ts; versions before 12-03: `<tag>/link`). */
  tag: (name: string, tag: string): LinkPlace => ({
    file: `${repo(name)}/_manifests/tags/${tag}`,
    inFolder: `${repo(name)}/_manifests/tags/${tag}/link`,
  }),
  /** An upload session's bytes: one file, no folder of its own (a folder costs an inode made and freed per blob). */
  uploadData: (name: string, id: string) => `${repo(name)}/_uploads/${id}`,
  /** Where sessions opened by older versions keep their bytes, in a folder of their own. */
  uploadDataInFolder: (name: string, id: string) => `${repo(name)}/_uploads/${id}/data`,
  /** Where sessions opened by older versions kept their start time (now in the index entry). */
  uploadStartedAt: (name: string, id: string) => `${repo(name)}/_uploads/${id}/startedat`,
  referrersOf: (name: string, subject: Digest) => `${repo(name)}/_referrers/${subject.algorithm}/${subject.hex}`,
  referrer: (name: string, subject: Digest, d: Digest) =>
    `${repo(name)}/_referrers/${subject.algorithm}/${subject.hex}/${d.algorithm}-${d.hex}`,
  /** Visibility and other settings; `_` cannot start a name component, so no repository collides with it. */
  repositorySettings: (name: string) => `${repo(name)}/_settings.json`,
  catalogDir: '/catalog',
  /** The search index: one document per repository (storage/search.ts). */
  searchDir: '/search',
  searchEntry: (name: string) => `/search/${encodeName(name)}${SEARCH_DOCUMENT}`,
  /** The repository whose document a file of searchDir is; undefined for any other file. */
  searchEntryOf: (file: string) => (file.endsWith(SEARCH_DOCUMENT) ? decodeName(file.slice(0, -SEARCH_DOCUMENT.length)) : undefined),
  /** One document per tag: its facts (storage/search.ts). */
  searchTags: (name: string) => `/search-tags/${encodeName(name)}`,
  searchTag: (name: string, tag: string) => `/search-tags/${encodeName(name)}/${tag}`,
  /** Which summaries each process changed lately (storage/search-journal.ts), one document per process. */
  searchJournalDir: '/search-journal',
  /** Every repository's search summary in one document, with the journal positions it is current to. */
  searchSnapshot: '/search-snapshot.json',
  searchJournal: (writer: string) => `/search-journal/${writer}.json`,
  /** The tags newest first: one empty file per tag, named by its inverted push time and the tag. */
  searchOrder: (name: string) => `/search-order/${encodeName(name)}`,
  searchOrderKey: (name: string, key: string) => `/search-order/${encodeName(name)}/${key}`,
  /** Logos, content-addressed: `<sha256 hex>-<size>.<png|webp>` (older versions kept cards here too). */
  image: (file: string) => `/web/images/${file}`,
  imagesDir: '/web/images',
  /** Social cards: one folder per repository, holding its current card, named by what it was drawn from. */
  cardsDir: '/web/cards',
  cardsOf: (name: string) => `/web/cards/${encodeName(name)}`,
  card: (name: string, key: string) => `/web/cards/${encodeName(name)}/${key}.png`,
  /** Browser sessions, by the sha256 of their cookie. */
  session: (id: string) => `/web/sessions/${id}.json`,
  sessionsDir: '/web/sessions',
  /** The token signing key (auth/keys.ts). */
  signingKey: '/auth/signing-key.pem',
  /** Accounts (auth/accounts.ts): users and organisations by name, personal access tokens by id. */
  usersDir: '/auth/users',
  user: (name: string) => `/auth/users/${name}.json`,
  organisationsDir: '/auth/orgs',
  organisation: (name: string) => `/auth/orgs/${name}.json`,
  accessTokensDir: '/auth/tokens',
  accessToken: (id: string) => `/auth/tokens/${id}.json`,
  /** The ids of a user's tokens (an empty file each), so listing them reads only theirs, not every token. */
  accessTokensOf: (owner: string) => `/auth/token-owners/${owner}`,
  accessTokenOf: (owner: string, id: string) => `/auth/token-owners/${owner}/${id}`,
  /** Written once every token made before the owners' folders existed is in its owner's folder. */
  accessTokenOwnersComplete: '/auth/token-owners.complete',
  /** Robots of a namespace; `org+name` is kept as org/name.json (storage paths take no `+`). */
  robotsOf: (namespace: string) => `/auth/robots/${namespace}`,
  robot: (namespace: string, name: string) => `/auth/robots/${namespace}/${name}.json`,
  /** Who holds a user or organisation name, by its canonical form (auth/accounts.ts). */
  nameClaim: (canonical: string) => `/auth/claims/${canonical}.json`,
  /** Written once every account made before the claims existed has its claim. */
  nameClaimsComplete: '/auth/claims.complete',
  /**
   * The organisations a user may be a member of (an empty file each; the organisation's record decides),
   * so a user's organisations are found without reading every organisation.
   */
  membershipsOf: (user: string) => `/auth/memberships/${user}`,
  membership: (user: string, organisation: string) => `/auth/memberships/${user}/${organisation}`,
  /** Written once every membership made before the memberships' folders existed is filed. */
  membershipsComplete: '/auth/memberships.complete',
  /** Refresh tokens (auth/accounts.ts), by id. */
  refreshTokensDir: '/auth/refresh',
  refreshToken: (id: string) => `/auth/refresh/${id}.json`,
  catalogEntry: (name: string) => `/catalog/${encodeName(name)}`,
  /**
   * The visibility index (storage/visibility.ts): an empty file per repository whose settings set a
   * visibility, so one listing per visibility answers for every repository; the stamp changes with every
   * change, and `complete` says the index covers the settings written before it existed.
   */
  visibilityDir: (visibility: 'public' | 'private') => `/visibility/${visibility}`,
  visibilityEntry: (visibility: 'public' | 'private', name: string) => `/visibility/${visibility}/${encodeName(name)}`,
  visibilityStamp: '/visibility/stamp',
  visibilityComplete: '/visibility/complete',
  /** Every open upload session, by id, holding its repository name and start time (JSON): get and expiry read it. */
  openUploadsDir: '/uploads',
  openUpload: (id: string) => `/uploads/${id}`,
  /** A pull-through cache's last pull of each mirrored manifest (mirror/eviction.ts), by sha256 of name@digest. */
  mirrorPullsDir: (prefix: string) => `/mirrors/${encodeURIComponent(prefix)}/pulled`,
  mirrorPull: (prefix: string, key: string) => `/mirrors/${encodeURIComponent(prefix)}/pulled/${key}.json`,
  /** When a mirrored tag was last found current upstream, shared by every replica (by sha256 of name:tag). */
  mirrorTagCheck: (prefix: string, key: string) => `/mirrors/${encodeURIComponent(prefix)}/checked/${key}`,
  /** Lifecycle policies (retention, immutable tags, quota) of a repository or namespace, as JSON. */
  policiesDir: '/policies',
  policy: (scope: string) => `/policies/${encodeName(scope)}`,
  /**
   * Maintained quota usage of a namespace (storage/usage.ts): the usage document, and per linked blob a
   * marker counting the namespace's repositories that link it. A namespace is one name component.
   */
  quotasDir: '/quotas',
  quotaDir: (namespace: string) => `/quotas/${namespace}`,
  quotaUsage: (namespace: string) => `/quotas/${namespace}/usage.json`,
  quotaBlobsDir: (namespace: string) => `/quotas/${namespace}/blobs`,
  quotaBlob: (namespace: string, d: Digest) => `/quotas/${namespace}/blobs/${d.algorithm}/${d.hex}`,
  /** Servers that keep their locks and caches in memory (no Redis), one marker each (storage/presence.ts). */
  serversDir: '/servers',
  serverMarker: (id: string) => `/servers/${id}.json`,
  /** When a scheduled job (upload expiry, retention, garbage collection) last finished, and where (server/lifecycle.ts). */
  jobStamp: (job: string) => `/lifecycle/${job}.json`,
};

// Repository names never contain "~", so it can stand for "/" in a single path segment.
export function encodeName(name: string): string {
  return name.replaceAll('/', '~');
}

export function decodeName(segment: string): string {
  return segment.replaceAll('~', '/');
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
