// Coordination for the worker processes of one `berth serve --workers N` without Redis: the primary
// process arbitrates the locks over IPC and relays cache invalidations to every worker.
import type { Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AnnouncementBoard, Watchers, type Announcements } from './announcements.ts';
import { LocalGenerations, LocalRateCounter, type Coordination, type Generations, type RateCount, type RateCounter } from './coordination.ts';
import type { Lock } from './lock.ts';

interface LockMessage {
  berthLock: 'acquire' | 'release' | 'granted';
  key: string;
  id: string;
}

/** Whether an IPC message is one of ours of a kind: an object carrying the kind's tag field. */
function tagged<T>(tag: string): (message: unknown) => message is T {
  return (message: unknown): message is T => typeof message === 'object' && message !== null && tag in message;
}

const isLockMessage = tagged<LockMessage>('berthLock');

interface GenerationMessage {
  /** 'ready': the worker listens for invalidations (sent once, before it caches anything). */
  berthGeneration: 'bump' | 'bumped' | 'invalidate' | 'ack' | 'ready';
  name: string;
  id: string;
}

const isGenerationMessage = tagged<GenerationMessage>('berthGeneration');

/**
 * Each worker keeps its own counters and reads them without asking anyone; a write announces itself
 * through the primary, which tells every worker and answers only when all have heard. So once a write
 * has been answered, no worker serves what it replaced.
 */
class ClusterGenerations implements Generations {
  private readonly local = new LocalGenerations();
  private readonly waiting = new Map<string, () => void>();

  constructor() {
    process.on('message', (message: unknown) => {
      if (!isGenerationMessage(message)) return;
      if (message.berthGeneration === 'invalidate') {
        void this.local.bump(message.name).then(() => process.send!({ ...message, berthGeneration: 'ack' } satisfies GenerationMessage));
      } else if (message.berthGeneration === 'bumped') {
        this.waiting.get(message.id)?.();
        this.waiting.delete(message.id);
      }
    });
    process.send!({ berthGeneration: 'ready', name: '', id: '' } satisfies GenerationMessage);
  }

  current(name: string): Promise<number> {
    return this.local.current(name);
  }

  bump(name: string): Promise<void> {
    const id = randomUUID();
    return new Promise<void>((resolve) => {
      this.waiting.set(id, resolve);
      process.send!({ berthGeneration: 'bump', name, id } satisfies GenerationMessage);
    });
  }
}

class ClusterLock implements Lock {
  private readonly waiting = new Map<string, () => void>();

  constructor() {
    process.on('message', (message: unknown) => {
      if (isLockMessage(message) && message.berthLock === 'granted') {
        this.waiting.get(message.id)?.();
        this.waiting.delete(message.id);
      }
    });
  }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const id = randomUUID();
    await new Promise<void>((resolve) => {
      this.waiting.set(id, resolve);
      process.send!({ berthLock: 'acquire', key, id } satisfies LockMessage);
    });
    try {
      return await fn();
    } finally {
      process.send!({ berthLock: 'release', key, id } satisfies LockMessage);
    }
  }
}

interface RateMessage {
  berthRate: 'hit' | 'count';
  id: string;
  key?: string;
  windowMs?: number;
  amount?: number;
  count?: RateCount;
}

const isRateMessage = tagged<RateMessage>('berthRate');

/** Every worker counts in the primary, so a limit holds for the whole machine, not per worker. */
class ClusterRateCounter implements RateCounter {
  private readonly waiting = new Map<string, (count: RateCount) => void>();

  constructor() {
    process.on('message', (message: unknown) => {
      if (isRateMessage(message) && message.berthRate === 'count') {
        this.waiting.get(message.id)?.(message.count!);
        this.waiting.delete(message.id);
      }
    });
  }

  hit(key: string, windowMs: number, amount = 1): Promise<RateCount> {
    const id = randomUUID();
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      process.send!({ berthRate: 'hit', id, key, windowMs, amount } satisfies RateMessage);
    });
  }
}

/** Runs in the primary: the counters behind every worker's ClusterRateCounter. */
export class ClusterRateRelay {
  private readonly counter = new LocalRateCounter();

  attach(worker: Worker): void {
    worker.on('message', (message: unknown) => {
      if (!isRateMessage(message) || message.berthRate !== 'hit') return;
      void this.counter.hit(message.key!, message.windowMs!, message.amount ?? 1).then((count) => {
        if (worker.isConnected()) worker.send({ berthRate: 'count', id: message.id, count } satisfies RateMessage);
      });
    });
  }
}

interface AnnounceMessage {
  /** Worker to primary: set, delete, watch, unwatch; primary to worker: current (the answer to a watch), changed. */
  berthAnnounce: 'set' | 'delete' | 'watch' | 'unwatch' | 'current' | 'changed';
  key: string;
  value?: string;
  ttlMs?: number;
  id?: string;
}

const isAnnounceMessage = tagged<AnnounceMessage>('berthAnnounce');

/** The values live in the primary; a worker hears the changes of the keys it watches, in order, over its IPC channel. */
class ClusterAnnouncements implements Announcements {
  private readonly watchers = new Watchers();
  private readonly waiting = new Map<string, (value: string | undefined) => void>();

  constructor() {
    process.on('message', (message: unknown) => {
      if (!isAnnounceMessage(message)) return;
      if (message.berthAnnounce === 'current') {
        this.waiting.get(message.id!)?.(message.value);
        this.waiting.delete(message.id!);
      } else if (message.berthAnnounce === 'changed') {
        this.watchers.tell(message.key, message.value);
      }
    });
  }

  async announce(key: string, value: string, ttlMs: number): Promise<void> {
    process.send!({ berthAnnounce: 'set', key, value, ttlMs } satisfies AnnounceMessage);
  }

  async withdraw(key: string): Promise<void> {
    process.send!({ berthAnnounce: 'delete', key } satisfies AnnounceMessage);
  }

  async watch(key: string, onChange: (value: string | undefined) => void): Promise<() => void> {
    this.watchers.add(key, onChange);
    const id = randomUUID();
    const current = new Promise<string | undefined>((resolve) => this.waiting.set(id, resolve));
    process.send!({ berthAnnounce: 'watch', key, id } satisfies AnnounceMessage);
    onChange(await current);
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      this.watchers.remove(key, onChange);
      process.send!({ berthAnnounce: 'unwatch', key } satisfies AnnounceMessage);
    };
  }
}

/** Runs in the primary: holds every worker's announcements and tells each change to the workers watching its key. */
export class ClusterAnnouncementRelay {
  private readonly board = new AnnouncementBoard();
  /** Per watched key: how many watches each worker holds, and the board listener that relays to them. */
  private readonly watched = new Map<string, { workers: Map<Worker, number>; stop: () => void }>();

  attach(worker: Worker): void {
    worker.on('message', (message: unknown) => {
      if (!isAnnounceMessage(message)) return;
      const { key } = message;
      try {
        if (message.berthAnnounce === 'set') this.board.set(key, message.value!, message.ttlMs!);
        else if (message.berthAnnounce === 'delete') this.board.delete(key);
        else if (message.berthAnnounce === 'unwatch') this.unwatch(worker, key, 1);
        else if (message.berthAnnounce === 'watch') {
          this.watch(worker, key);
          worker.send({ berthAnnounce: 'current', key, id: message.id, value: this.board.get(key) } satisfies AnnounceMessage);
        }
      } catch {
        // Over the bound: the value is not kept (its watchers wait for the fill the old way), the watch answers none.
        if (message.berthAnnounce === 'watch' && worker.isConnected()) worker.send({ berthAnnounce: 'current', key, id: message.id } satisfies AnnounceMessage);
      }
    });
    worker.on('exit', () => {
      for (const key of [...this.watched.keys()]) this.unwatch(worker, key, Infinity);
    });
  }

  private watch(worker: Worker, key: string): void {
    let entry = this.watched.get(key);
    if (!entry) {
      const workers = new Map<Worker, number>();
      const stop = this.board.on(key, (value) => {
        for (const w of workers.keys()) if (w.isConnected()) w.send({ berthAnnounce: 'changed', key, value } satisfies AnnounceMessage);
      });
      entry = { workers, stop };
      this.watched.set(key, entry);
    }
    entry.workers.set(worker, (entry.workers.get(worker) ?? 0) + 1);
  }

  private unwatch(worker: Worker, key: string, count: number): void {
    const entry = this.watched.get(key);
    const held = entry?.workers.get(worker);
    if (!entry || held === undefined) return;
    if (held > count) entry.workers.set(worker, held - count);
    else entry.workers.delete(worker);
    if (entry.workers.size === 0) {
      entry.stop();
      this.watched.delete(key);
    }
  }
}

export function clusterWorkerCoordination(): Coordination {
  return {
    lock: new ClusterLock(),
    generations: new ClusterGenerations(),
    counter: new ClusterRateCounter(),
    announcements: new ClusterAnnouncements(),
    close: async () => {},
  };
}

/** Runs in the primary: relays a worker's bump to every worker and answers once all have acknowledged. */
export class ClusterGenerationRelay {
  private readonly workers = new Set<Worker>();
  /**
   * Workers that listen for invalidations. One still starting drops what it is sent and would never
   * answer, so a write would wait on it for ever; it has nothing cached yet, so it need not hear.
   */
  private readonly ready = new Set<Worker>();
  private readonly pending = new Map<string, { from: Worker; name: string; waitingFor: Set<Worker> }>();

  attach(worker: Worker): void {
    this.workers.add(worker);
    worker.on('message', (message: unknown) => {
      if (!isGenerationMessage(message)) return;
      if (message.berthGeneration === 'bump') this.relay(worker, message);
      else if (message.berthGeneration === 'ack') this.acknowledged(message.id, worker);
      else if (message.berthGeneration === 'ready') this.ready.add(worker);
    });
    worker.on('exit', () => {
      this.workers.delete(worker);
      this.ready.delete(worker);
      for (const id of [...this.pending.keys()]) this.acknowledged(id, worker);
    });
  }

  private relay(from: Worker, message: GenerationMessage): void {
    const connected = [...this.workers].filter((w) => w.isConnected());
    // Every worker is told (one whose 'ready' is still on its way hears it too); the answer waits only
    // for those known to listen.
    const waitingFor = new Set(connected.filter((w) => this.ready.has(w)));
    this.pending.set(message.id, { from, name: message.name, waitingFor });
    for (const worker of connected) worker.send({ ...message, berthGeneration: 'invalidate' } satisfies GenerationMessage);
    if (waitingFor.size === 0) {
      this.pending.delete(message.id);
      if (from.isConnected()) from.send({ berthGeneration: 'bumped', name: message.name, id: message.id } satisfies GenerationMessage);
    }
  }

  private acknowledged(id: string, worker: Worker): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    entry.waitingFor.delete(worker);
    if (entry.waitingFor.size > 0) return;
    this.pending.delete(id);
    if (entry.from.isConnected()) entry.from.send({ berthGeneration: 'bumped', name: entry.name, id } satisfies GenerationMessage);
  }
}

/** Runs in the primary: grants each key to one worker at a time, in arrival order. */
export class ClusterLockArbiter {
  private readonly queues = new Map<string, Array<{ worker: Worker; id: string }>>();

  attach(worker: Worker): void {
    worker.on('message', (message: unknown) => {
      if (!isLockMessage(message)) return;
      if (message.berthLock === 'acquire') this.acquire(message.key, worker, message.id);
      else if (message.berthLock === 'release') this.release(message.key, message.id);
    });
    // A worker that dies holding a lock must not block the others.
    worker.on('exit', () => {
      for (const [key, queue] of this.queues) {
        const head = queue[0];
        const rest = queue.filter((entry) => entry.worker !== worker);
        this.queues.set(key, rest);
        if (rest.length === 0) this.queues.delete(key);
        else if (head?.worker === worker) this.grant(key);
      }
    });
  }

  private acquire(key: string, worker: Worker, id: string): void {
    const queue = this.queues.get(key) ?? [];
    queue.push({ worker, id });
    this.queues.set(key, queue);
    if (queue.length === 1) this.grant(key);
  }

  private release(key: string, id: string): void {
    const queue = this.queues.get(key);
    if (!queue || queue[0]?.id !== id) return;
    queue.shift();
    if (queue.length === 0) this.queues.delete(key);
    else this.grant(key);
  }

  private grant(key: string): void {
    const head = this.queues.get(key)?.[0];
    if (head && head.worker.isConnected()) head.worker.send({ berthLock: 'granted', key, id: head.id } satisfies LockMessage);
  }
}
