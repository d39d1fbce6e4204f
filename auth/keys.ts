// The key tokens are signed with: ES256 (P-256), generated at first start and kept in storage, so every
// replica signs with the same key and tokens survive restarts. `kid` is the key's RFC 7638 JWK thumbprint,
// which is how Distribution 3 finds a trusted key, so an external Distribution can trust Berth's tokens.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { layout, type Lock, type StorageDriver } from '../storage/index.ts';

export const SIGNING_KEY_PATH = layout.signingKey;

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public key as a JWK (with kid, alg and use), for the JWKS document. */
  jwk: JsonWebKey & { kid: string; alg: string; use: string };
}

export function jwkThumbprint(jwk: JsonWebKey): string {
  // RFC 7638: the required members only, in lexicographic order, no whitespace.
  const canonical =
    jwk.kty === 'EC'
      ? JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
      : JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  return createHash('sha256').update(canonical).digest('base64url');
}

function fromPem(pem: string): SigningKey {
  const privateKey = createPrivateKey(pem);
  const publicKey = createPublicKey(privateKey);
  const exported = publicKey.export({ format: 'jwk' });
  const kid = jwkThumbprint(exported);
  return { kid, privateKey, publicKey, jwk: { ...exported, kid, alg: 'ES256', use: 'sig' } };
}

/** Reads the signing key, or creates it once (under a lock, so concurrent first starts agree on one). */
export async function loadSigningKey(driver: StorageDriver, lock: Lock): Promise<SigningKey> {
  const existing = await driver.getContent(SIGNING_KEY_PATH);
  if (existing) return fromPem(existing.toString());
  return lock.run('auth:signing-key', async () => {
    const again = await driver.getContent(SIGNING_KEY_PATH);
    if (again) return fromPem(again.toString());
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    await driver.putContent(SIGNING_KEY_PATH, pem);
    return fromPem(pem);
  });
}
