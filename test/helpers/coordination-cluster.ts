// Cluster workers' Coordination under test: this process is the primary (ClusterLockArbiter,
// ClusterGenerationRelay, ClusterRateRelay attached to each worker, as `berth serve --workers` does) and each
// member is a real forked worker holding clusterWorkerCoordination, driven over the same IPC channel.
import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import {
  ClusterAnnouncementRelay,
  ClusterGenerationRelay,
  ClusterLockArbiter,
  ClusterRateRelay,
  type Coordination,
  type RateCount,
} from '../../storage/index.ts';

export type MemberRequest =
  | { contract: 'hit'; id: string; key: string; windowMs: number; amount?: number }
  | { contract: 'current' | 'bump' | 'lock'; id: string; key: string }
  | { contract: 'leave'; id: string }
  | { contract: 'announce'; id: string; key: string; value: string; ttlMs: number }
  | { contract: 'withdraw' | 'watch'; id: string; key: string }
  | { contract: 'unwatch'; id: string };

type MemberReply =
  | { contract: 'ready' }
  | { contract: 'entered'; id: string }
  | { contract: 'heard'; id: string; value?: string }
  | { contract: 'result'; id: string; value?: unknown; error?: string };

/** A Coordination whose every call is made by the worker's own clusterWorkerCoordination. */
function clusterMember(worker: Worker): Coordination {
  const results = new Map<string, { resolve(value: unknown): void; reject(err: Error): void }>();
  const entered = new Map<string, () => void>();
  const heard = new Map<string, (value: string | undefined) => void>();
  worker.on('message', (message: MemberReply) => {
    if (message?.contract === 'entered') entered.get(message.id)?.();
    if (message?.contract === 'heard') heard.get(message.id)?.(message.value);
    if (message?.contract !== 'result') return;
    const waiting = results.get(message.id);
    results.delete(message.id);
    if (message.error !== undefined) waiting?.reject(new Error(message.error));
    else waiting?.resolve(message.value);
  });
  const ask = <T>(request: MemberRequest): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      results.set(request.id, { resolve: resolve as (value: unknown) => void, reject });
      worker.send(request);
    });
  return {
    counter: { hit: (key, windowMs, amount) => ask<RateCount>({ contract: 'hit', id: randomUUID(), key, windowMs, amount }) },
    generations: {
      current: (key) => ask<number>({ contract: 'current', id: randomUUID(), key }),
      bump: (key) => ask<void>({ contract: 'bump', id: randomUUID(), key }),
    },
    lock: {
      async run(key, fn) {
        const id = randomUUID();
        const inside = new Promise<void>((resolve) => entered.set(id, resolve));
        const held = ask<void>({ contract: 'lock', id, key });
        await inside;
        entered.delete(id);
        try {
          return await fn();
        } finally {
          worker.send({ contract: 'leave', id } satisfies MemberRequest);
          await held;
        }
      },
    },
    announcements: {
      announce: (key, value, ttlMs) => ask<void>({ contract: 'announce', id: randomUUID(), key, value, ttlMs }),
      withdraw: (key) => ask<void>({ contract: 'withdraw', id: randomUUID(), key }),
      async watch(key, onChange) {
        const id = randomUUID();
        heard.set(id, onChange);
        await ask<void>({ contract: 'watch', id, key });
        return () => {
          heard.delete(id);
          worker.send({ contract: 'unwatch', id } satisfies MemberRequest);
        };
      },
    },
    close: async () => {},
  };
}

/** Forks `count` workers with the primary's arbiter and relays attached; stop() ends them. */
export async function clusterMembers(count: number): Promise<{ members: Coordination[]; stop(): Promise<void> }> {
  cluster.setupPrimary({ exec: join(import.meta.dirname, 'coordination-worker.ts') });
  const arbiter = new ClusterLockArbiter();
  const relay = new ClusterGenerationRelay();
  const rates = new ClusterRateRelay();
  const announcements = new ClusterAnnouncementRelay();
  const workers = await Promise.all(
    Array.from({ length: count }, async () => {
      const worker = cluster.fork();
      arbiter.attach(worker);
      relay.attach(worker);
      rates.attach(worker);
      announcements.attach(worker);
      await new Promise<void>((resolve, reject) => {
        worker.once('exit', (code) => reject(new Error(`coordination worker exited with ${code}`)));
        worker.on('message', (message: MemberReply) => message?.contract === 'ready' && resolve());
      });
      return worker;
    }),
  );
  return {
    members: workers.map(clusterMember),
    stop: async () => {
      await Promise.all(
        workers.map((worker) => {
          if (worker.isDead()) return undefined;
          const exited = new Promise((resolve) => worker.once('exit', resolve));
          worker.kill();
          return exited;
        }),
      );
    },
  };
}
