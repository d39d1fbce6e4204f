// Parsers for the spec's identifiers: repository names, tags, digests. Every value that reaches a storage
// path has passed through one of these, so a path can never be steered outside its place.
import { StorageError } from './errors.ts';

// distribution-spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST_SHAPE_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
export const MAX_NAME_LENGTH = 255;

export type Algorithm = 'sha256' | 'sha512';
const HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, sha512: 128 };

export interface Digest {
  readonly algorithm: Algorithm;
  readonly hex: string;
  readonly value: string; // "algorithm:hex"
}

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function parseName(name: string): string {
  if (!isValidName(name)) {
    throw new StorageError({ kind: 'NameInvalid', name: name.slice(0, 300) }, 'invalid repository name');
  }
  return name;
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

export function tryParseDigest(value: string): Digest | undefined {
  if (!DIGEST_SHAPE_RE.test(value)) return undefined;
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return undefined;
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm, hex, value };
}

export function parseDigest(value: string): Digest {
  const digest = tryParseDigest(value);
  if (!digest) {
    throw new StorageError(
      { kind: 'DigestInvalid', digest: value.slice(0, 200) },
      'invalid digest: only sha256 and sha512 in lowercase hex are accepted',
    );
  }
  return digest;
}

/** A manifest reference is a tag or a digest; anything that could be a digest is judged as one. */
export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

export function parseReference(value: string): Reference | undefined {
  if (value.includes(':')) {
    const digest = tryParseDigest(value);
    return digest ? { kind: 'digest', digest } : undefined;
  }
  return isValidTag(value) ? { kind: 'tag', tag: value } : undefined;
}

export function looksLikeDigest(value: string): boolean {
  return value.includes(':');
}
