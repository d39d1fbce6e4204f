// A serving process whose locks and caches live in its own memory (no Redis) announces itself in storage,
// so that a lifecycle job started from another process (berth gc, berth retention run) can tell that it
// would race that server's pushes and leave it serving what the job changed.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { StorageDriver } from './driver/index.ts';
import { layout } from './layout.ts';
import { processLives } from '../platform/index.ts';

const RENEW_MS = 30_000;
/** A marker not renewed for this long belongs to a server that is gone (killed, or its machine). */
const FRESH_MS = 4 * RENEW_MS;

export interface ServerPresence {
  host: string;
  pid: number;
  startedAt: string;
  renewedAt: string;
}

export class PresenceMarker {
  private readonly path = layout.serverMarker(randomUUID());
  private readonly startedAt = new Date().toISOString();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly driver: StorageDriver) {}

  async start(): Promise<void> {
    await this.renew();
    this.timer = setInterval(() => void this.renew().catch(() => {}), RENEW_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.driver.delete(this.path).catch(() => {});
  }

  private renew(): Promise<void> {
    const presence: ServerPresence = { host: hostname(), pid: process.pid, startedAt: this.startedAt, renewedAt: new Date().toISOString() };
    return this.driver.putContent(this.path, JSON.stringify(presence));
  }
}

/** The servers without shared state that use this storage now (their markers are fresh and, on this machine, their process lives). */
export async function serversWithoutSharedState(driver: StorageDriver, now = Date.now()): Promise<ServerPresence[]> {
  const found: ServerPresence[] = [];
  for (const path of await driver.list(layout.serversDir)) {
    let presence: ServerPresence;
    try {
      presence = JSON.parse((await driver.getContent(path))?.toString() ?? '') as ServerPresence;
    } catch {
      continue; // gone meanwhile, or not ours
    }
    if (!(now - Date.parse(presence.renewedAt) < FRESH_MS)) continue;
    if (presence.host === hostname() && !processLives(presence.pid)) continue;
    found.push(presence);
  }
  return found;
}
