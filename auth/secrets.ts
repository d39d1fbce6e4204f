// Passwords and generated secrets. Passwords are hashed with argon2id (memory-hard); generated secrets
// (access tokens, robot secrets, refresh tokens) carry 256 random bits, so a fast hash suffices and a
// stored hash is compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

// OWASP's recommended argon2id minimum (19 MiB, 2 passes): tens of milliseconds per check, off the main thread.
const ARGON2 = { algorithm: 2 /* Argon2id (a const enum the package exports only as a type) */, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

// Loaded on the first password check: a registry that only serves tokens or pulls never pays its memory.
const argon2 = () => import('@node-rs/argon2');

export async function hashPassword(password: string): Promise<string> {
  return (await argon2()).hash(password, ARGON2);
}

// Checked against when the account does not exist, so that a wrong name costs as long as a wrong password.
let decoy: Promise<string> | undefined;

/** Constant-time (argon2's own comparison); a missing account is checked against a decoy hash. */
export async function verifyPassword(stored: string | undefined, password: string): Promise<boolean> {
  const against = stored ?? (await (decoy ??= hashPassword(randomBytes(16).toString('hex'))));
  try {
    const ok = await (await argon2()).verify(against, password);
    return ok && stored !== undefined;
  } catch {
    return false;
  }
}

/** A random id; never one that starts with "-", which a command line (berth token revoke ID) takes for an option. */
export function newId(bytes = 9): string {
  const id = randomBytes(bytes).toString('base64url');
  return id.startsWith('-') ? `A${id.slice(1)}` : id;
}

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Compares a presented secret with a stored sha256 hex, in time independent of where they differ. */
export function secretMatches(storedHash: string, presented: string): boolean {
  const a = Buffer.from(storedHash, 'hex');
  const b = createHash('sha256').update(presented).digest();
  return a.length === b.length && timingSafeEqual(a, b);
}
