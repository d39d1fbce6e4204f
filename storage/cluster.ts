// Coordination for the worker processes of one `berth serve --workers N` without Redis: the primary
// process arbitrates the locks over IPC, and workers cache nothing about repositories between requests
// (each reads tags and revisions from storage), so no worker can serve what another one changed.
import type { Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import type { Coordination, Generations } from './coordination.ts';
import type { Lock } from './lock.ts';

interface LockMessage {
  berthLock: 'acquire' | 'release' | 'granted';
  key: string;
  id: string;
}

function isLockMessage(message: unknown): message is LockMessage {
  return typeof message === 'object' && message !== null && 'berthLock' in message;
}

/** Nothing is ever known to be current: every read goes to storage. */
class UncachedGenerations implements Generations {
  async current(): Promise<undefined> {
    return undefined;
  }
  async bump(): Promise<void> {}
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

export function clusterWorkerCoordination(): Coordination {
  return { lock: new ClusterLock(), generations: new UncachedGenerations(), close: async () => {} };
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
