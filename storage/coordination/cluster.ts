// Coordination for the worker processes of one `berth serve --workers N` without Redis: the primary
// process arbitrates the locks over IPC and relays cache invalidations to every worker.
import type { Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { LocalGenerations, LocalRateCounter, type Coordination, type Generations, type RateCount, type RateCounter } from './coordination.ts';
import type { Lock } from './lock.ts';

interface LockMessage {
  berthLock: 'acquire' | 'release' | 'granted';
  key: string;
  id: string;
}

function isLockMessage(message: unknown): message is LockMessage {
  return typeof message === 'object' && message !== null && 'berthLock' in message;
}

interface GenerationMessage {
  /** 'ready': the worker listens for invalidations (sent once, before it caches anything). */
  berthGeneration: 'bump' | 'bumped' | 'invalidate' | 'ack' | 'ready';
  name: string;
  id: string;
}

function isGenerationMessage(message: unknown): message is GenerationMessage {
  return typeof message === 'object' && message !== null && 'berthGeneration' in message;
}

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

function isRateMessage(message: unknown): message is RateMessage {
  return typeof message === 'object' && message !== null && 'berthRate' in message;
}

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

export function clusterWorkerCoordination(): Coordination {
  return { lock: new ClusterLock(), generations: new ClusterGenerations(), counter: new ClusterRateCounter(), close: async () => {} };
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
