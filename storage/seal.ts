// Secrets the server must use in the clear (a webhook endpoint's signing secret, a replication rule's
// remote password: a hash would not do) are sealed (AES-256-GCM) before they are stored: with
// BERTH_WEBHOOK_SECRET_KEY, a key that never touches storage; else a key made once and kept in storage, as
// the token signing key is. Only server code opens them. One key for every room that seals.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Lock } from './coordination/index.ts';
import type { StorageDriver } from './driver/index.ts';

/** Where the key lives (made first for the webhooks, whose path it keeps). */
const SEALING_KEY = '/webhooks/sealing-key';

export class SecretSeal {
  private key?: Promise<Buffer>;

  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    /** BERTH_WEBHOOK_SECRET_KEY, base64 of 32 bytes. */
    private readonly configuredKey?: string,
  ) {}

  async seal(secret: string): Promise<string> {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', await this.keyOnce(), iv);
    const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), sealed.toString('base64url')].join('.');
  }

  /** The secret, or undefined when it was sealed with another key (the key changed since). */
  async open(sealed: string): Promise<string | undefined> {
    const [version, iv, tag, data] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || data === undefined) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', await this.keyOnce(), Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }

  private keyOnce(): Promise<Buffer> {
    this.key ??= this.load().catch((err: unknown) => {
      this.key = undefined;
      throw err;
    });
    return this.key;
  }

  private async load(): Promise<Buffer> {
    if (this.configuredKey) return Buffer.from(this.configuredKey, 'base64');
    const stored = await this.driver.getContent(SEALING_KEY);
    if (stored) return Buffer.from(stored.toString(), 'base64');
    // Made under a lock, so that two first starts agree on one key.
    return this.lock.run('webhooks:sealing-key', async () => {
      const again = await this.driver.getContent(SEALING_KEY);
      if (again) return Buffer.from(again.toString(), 'base64');
      const key = randomBytes(32);
      await this.driver.putContent(SEALING_KEY, key.toString('base64'));
      return key;
    });
  }
}
