// EventQueue: each endpoint's events waiting in storage, in order, so that they survive restarts and every
// replica sees them. A queue is a run of numbered files between a head (the next to deliver) and a tail
// (the next number to write). The tail moves under the endpoint's 'tail' lock (enqueue), the head under its
// 'head' lock (delivery), so a push never waits for a delivery in progress. Bounded: an event beyond the
// limit is dropped, and the drop recorded.
import type { Lock, StorageDriver } from '../storage/index.ts';
import type { RegistryEvent } from './envelope.ts';
import { paths } from './paths.ts';

interface Tail {
  next: number;
  dropped: number;
}

/** Where delivery stands: the next event to send, how often it was tried, and not before when again. */
export interface Head {
  next: number;
  attempts: number;
  retryAt: number;
}

/** One line of an endpoint's delivery log; never the receiver's response body. */
export interface DeliveryRecord {
  time: string;
  eventId?: string;
  action?: string;
  attempt: number;
  outcome: 'delivered' | 'failed' | 'dropped';
  /** The receiver's HTTP status, when it answered. */
  status?: number;
  /** Why it failed or was dropped, in Berth's words (no response body). */
  reason?: string;
}

export const LOG_LIMIT = 100;

async function readJson<T>(driver: StorageDriver, path: string): Promise<T | undefined> {
  const raw = await driver.getContent(path);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw.toString()) as T;
  } catch {
    return undefined;
  }
}

export class EventQueue {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    /** BERTH_WEBHOOK_QUEUE_LIMIT */
    private readonly limit: number,
    private readonly log: DeliveryLog,
  ) {}

  /** Appends the event to the endpoint's queue; false when the queue was full and the event was dropped (and recorded). */
  async enqueue(endpointId: string, event: RegistryEvent): Promise<boolean> {
    const queued = await this.lock.run(`webhook-tail:${endpointId}`, async () => {
      const [tail, head] = await Promise.all([this.tail(endpointId), this.head(endpointId)]);
      if (tail.next - head.next >= this.limit) {
        await this.driver.putContent(paths.tail(endpointId), JSON.stringify({ ...tail, dropped: tail.dropped + 1 }));
        return false;
      }
      // The event before the tail that names it: a reader never finds a number without its file.
      await this.driver.putContent(paths.item(endpointId, tail.next), JSON.stringify(event));
      await this.driver.putContent(paths.tail(endpointId), JSON.stringify({ ...tail, next: tail.next + 1 }));
      return true;
    });
    if (!queued) {
      await this.log.append(endpointId, {
        time: new Date().toISOString(),
        eventId: event.id,
        action: event.action,
        attempt: 0,
        outcome: 'dropped',
        reason: `the queue holds ${this.limit} events already`,
      });
    }
    return queued;
  }

  /** Events waiting, and events dropped because the queue was full. */
  async counts(endpointId: string): Promise<{ waiting: number; droppedFull: number }> {
    const [tail, head] = await Promise.all([this.tail(endpointId), this.head(endpointId)]);
    return { waiting: Math.max(0, tail.next - head.next), droppedFull: tail.dropped };
  }

  /**
   * Runs `fn` holding the endpoint's head (one delivery at a time for it, across replicas) with the
   * next event, if one is due; what `fn` returns is the new head (the event it leaves behind is removed).
   */
  async atHead(endpointId: string, fn: (event: RegistryEvent | undefined, head: Head) => Promise<Head>): Promise<'idle' | 'waiting' | 'worked'> {
    return this.lock.run(`webhook-head:${endpointId}`, async () => {
      const [tail, head] = await Promise.all([this.tail(endpointId), this.head(endpointId)]);
      if (head.next >= tail.next) return 'idle';
      if (head.retryAt > Date.now()) return 'waiting';
      const event = await readJson<RegistryEvent>(this.driver, paths.item(endpointId, head.next));
      const next = await fn(event, head);
      await this.driver.putContent(paths.head(endpointId), JSON.stringify(next));
      for (let seq = head.next; seq < next.next; seq++) await this.driver.delete(paths.item(endpointId, seq));
      return 'worked';
    });
  }

  /** When the head's next try is due (ms since 1970), or undefined when nothing waits. */
  async dueAt(endpointId: string): Promise<number | undefined> {
    const [tail, head] = await Promise.all([this.tail(endpointId), this.head(endpointId)]);
    return head.next < tail.next ? head.retryAt : undefined;
  }

  async remove(endpointId: string): Promise<void> {
    await this.driver.delete(paths.queue(endpointId));
  }

  private async tail(endpointId: string): Promise<Tail> {
    return (await readJson<Tail>(this.driver, paths.tail(endpointId))) ?? { next: 0, dropped: 0 };
  }

  private async head(endpointId: string): Promise<Head> {
    return (await readJson<Head>(this.driver, paths.head(endpointId))) ?? { next: 0, attempts: 0, retryAt: 0 };
  }
}

/** The last LOG_LIMIT deliveries of each endpoint, newest last. */
export class DeliveryLog {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
  ) {}

  async append(endpointId: string, record: DeliveryRecord): Promise<void> {
    await this.lock.run(`webhook-log:${endpointId}`, async () => {
      const records = await this.read(endpointId);
      records.push(record);
      await this.driver.putContent(paths.log(endpointId), JSON.stringify(records.slice(-LOG_LIMIT)));
    });
  }

  async read(endpointId: string): Promise<DeliveryRecord[]> {
    const records = await readJson<DeliveryRecord[]>(this.driver, paths.log(endpointId));
    return Array.isArray(records) ? records : [];
  }

  async remove(endpointId: string): Promise<void> {
    await this.driver.delete(paths.log(endpointId));
  }
}
