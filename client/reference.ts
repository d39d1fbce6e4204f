// Image references as docker parses them: [registry[:port]/]name[:tag|@digest]. A first component
// names a registry only when it looks like a host (has "." or ":", or is "localhost"); otherwise the
// whole text is a name on the default registry, where a one-part name gets the "library/" prefix.
import { InvalidReferenceError } from './errors.ts';

export const DOCKER_HUB = 'docker.io';

export interface ImageReference {
  /** host[:port] as the user wrote it (docker.io for Docker Hub). */
  registry: string;
  /** The repository name inside the registry, e.g. library/busybox. */
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const HOST = /^(?:\[[0-9a-fA-F:]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?)(?::\d{1,5})?$/;

function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || component !== component.toLowerCase();
}

/** The registry people name as docker.io or index.docker.io is one and the same. */
export function normalizeRegistry(registry: string): string {
  return registry === 'index.docker.io' || registry === 'registry-1.docker.io' ? DOCKER_HUB : registry;
}

export function parseReference(text: string, defaultRegistry: string = DOCKER_HUB): ImageReference {
  const fail = (why: string): never => {
    throw new InvalidReferenceError(`invalid reference ${JSON.stringify(text)}: ${why}`);
  };
  if (text === '' || text.length > 4096) fail('empty or too long');
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) fail('the digest must be algorithm:hex');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail('a tag is up to 128 letters, digits, "_", "." and "-", not starting with "." or "-"');
  }
  const slash = rest.indexOf('/');
  let registry = normalizeRegistry(defaultRegistry);
  let repository = rest;
  const registryNamed = slash >= 0 && looksLikeHost(rest.slice(0, slash));
  if (registryNamed) {
    registry = normalizeRegistry(rest.slice(0, slash));
    repository = rest.slice(slash + 1);
    if (!HOST.test(registry)) fail(`${registry} is not a registry host`);
  }
  if (repository === '') fail('the name is missing');
  for (const component of repository.split('/')) {
    if (!COMPONENT.test(component)) fail(`name component ${JSON.stringify(component)} must be lowercase letters and digits, separated by ".", "_", "__" or "-"`);
  }
  // Docker Hub's official images live under library/; so do one-part names on the default registry.
  if (!repository.includes('/') && (registry === DOCKER_HUB || !registryNamed)) repository = `library/${repository}`;
  if (!tag && !digest) tag = 'latest';
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The reference written out in full: registry/repository:tag, or …@digest when pinned. */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** What to ask the registry's manifests endpoint for: the digest when there is one, else the tag. */
export function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}
