// A node:cluster worker that holds the cluster workers' Coordination (clusterWorkerCoordination, talking to
// its primary over IPC) and does with it what the test (its primary) asks: see clusterMember below.
import { clusterWorkerCoordination } from '../../storage/index.ts';
import type { MemberRequest } from './coordination-cluster.ts';

const coordination = clusterWorkerCoordination();
const leaving = new Map<string, () => void>();
const unwatching = new Map<string, () => void>();

function answer(id: string, value?: unknown, error?: string): void {
  process.send!({ contract: 'result', id, value, error });
}

process.on('message', (message: MemberRequest) => {
  if (typeof message !== 'object' || message === null || !('contract' in message)) return;
  const { id } = message;
  const done = (work: Promise<unknown>) => work.then((value) => answer(id, value), (err: Error) => answer(id, undefined, err.message));
  switch (message.contract) {
    case 'hit':
      return void done(coordination.counter.hit(message.key, message.windowMs, message.amount));
    case 'current':
      return void done(coordination.generations.current(message.key));
    case 'bump':
      return void done(coordination.generations.bump(message.key));
    case 'lock':
      return void done(
        coordination.lock.run(message.key, () => {
          process.send!({ contract: 'entered', id });
          return new Promise<void>((resolve) => leaving.set(id, resolve));
        }),
      );
    case 'leave':
      leaving.get(id)?.();
      leaving.delete(id);
      return;
    case 'announce':
      return void done(coordination.announcements.announce(message.key, message.value, message.ttlMs));
    case 'withdraw':
      return void done(coordination.announcements.withdraw(message.key));
    case 'watch':
      return void done(
        coordination.announcements
          .watch(message.key, (value) => process.send!({ contract: 'heard', id, value }))
          .then((stop) => void unwatching.set(id, stop)),
      );
    case 'unwatch':
      unwatching.get(id)?.();
      unwatching.delete(id);
  }
});
process.send!({ contract: 'ready' });
