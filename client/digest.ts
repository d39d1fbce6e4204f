// Digests as the image spec registers them: sha256 and sha512 only, in lowercase hex of their length.
// Any other algorithm is refused before anything is hashed with it or a path or URL is made of it.
import { createHash } from 'node:crypto';
import { DigestMismatchError } from './errors.ts';

export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/** The algorithm and hex of a digest the spec allows, or undefined. */
export function parseDigest(digest: string): { algorithm: DigestAlgorithm; hex: string } | undefined {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon) as DigestAlgorithm;
  const hex = digest.slice(colon + 1);
  if (!Object.hasOwn(HEX_LENGTH, algorithm) || hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm, hex };
}

/** The algorithm of `digest`; throws unless the spec allows it. */
export function digestAlgorithm(digest: string, what: string): DigestAlgorithm {
  const parsed = parseDigest(digest);
  if (!parsed) throw new DigestMismatchError(`${what}: ${JSON.stringify(digest)} is not a sha256 or sha512 digest`);
  return parsed.algorithm;
}

export function digestOf(bytes: Buffer, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** Throws unless `bytes` hash to `digest` (sha256 or sha512). */
export function verifyDigest(bytes: Buffer, digest: string, what: string): void {
  const actual = digestOf(bytes, digestAlgorithm(digest, what));
  if (actual !== digest) throw new DigestMismatchError(`${what}: content has digest ${actual}, expected ${digest}`);
}
