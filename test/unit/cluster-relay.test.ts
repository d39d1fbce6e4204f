// The primary's relay of cache invalidations between --workers processes. A worker still starting has no
// listener yet and drops what it is sent: a write must not wait on its answer (it hung a push while the
// second worker started). Stand-in workers here: the real fault, a message lost before a listener
// exists, cannot be produced on demand with real processes.
import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import type { Worker } from 'node:cluster';
import { ClusterGenerationRelay } from '../../storage/index.ts';

interface Sent {
  berthGeneration: string;
  name: string;
  id: string;
}

class StandInWorker extends EventEmitter {
  readonly sent: Sent[] = [];
  constructor(private readonly answers: boolean) {
    super();
  }
  isConnected(): boolean {
    return true;
  }
  send(message: Sent): boolean {
    this.sent.push(message);
    // A worker that listens acknowledges an invalidation; one still starting drops it.
    if (this.answers && message.berthGeneration === 'invalidate') queueMicrotask(() => this.emit('message', { ...message, berthGeneration: 'ack' }));
    return true;
  }
}

describe('cluster: the relay of cache invalidations', () => {
  it('answers a write once every worker that listens has heard; a worker still starting is told but not waited for', async () => {
    const relay = new ClusterGenerationRelay();
    const writer = new StandInWorker(true);
    const starting = new StandInWorker(false);
    relay.attach(writer as unknown as Worker);
    relay.attach(starting as unknown as Worker);
    writer.emit('message', { berthGeneration: 'ready', name: '', id: '' });
    writer.emit('message', { berthGeneration: 'bump', name: 'app', id: 'w1' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(starting.sent.map((m) => m.berthGeneration)).to.deep.equal(['invalidate']);
    expect(writer.sent.map((m) => m.berthGeneration)).to.deep.equal(['invalidate', 'bumped']);

    // Once it says it listens, it is waited for: the next write is answered only after its ack.
    starting.emit('message', { berthGeneration: 'ready', name: '', id: '' });
    writer.emit('message', { berthGeneration: 'bump', name: 'app', id: 'w2' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(writer.sent.filter((m) => m.id === 'w2').map((m) => m.berthGeneration)).to.deep.equal(['invalidate']);
    starting.emit('message', { berthGeneration: 'ack', name: 'app', id: 'w2' });
    expect(writer.sent.filter((m) => m.id === 'w2').map((m) => m.berthGeneration)).to.deep.equal(['invalidate', 'bumped']);
  });
});
