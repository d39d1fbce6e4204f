// The one Coordination suite every implementation runs (local, cluster workers, Redis), as every driver runs
// driver-contract.ts: what several Berth processes rely on agreeing about — one holder of a lock at a time,
// a bump seen by every process once it resolves, one rate count for all.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { Coordination } from '../../storage/index.ts';
import { waitFor } from '../helpers/wait.ts';

export interface CoordinationUnderTest {
  /** Two members sharing one state, as two processes of one registry do (the same one twice for local). */
  members: [Coordination, Coordination];
  cleanup(): Promise<void>;
}

/** A promise and the functions that settle it: lets a test hold a lock exactly as long as it says. */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

export function describeCoordination(name: string, make: () => Promise<CoordinationUnderTest>): void {
  describe(`Coordination contract: ${name}`, function () {
    this.timeout(10_000);
    let a: Coordination;
    let b: Coordination;
    let subject: CoordinationUnderTest;
    // Keys of their own per run: an implementation with shared state (Redis) may outlive a run.
    const key = (what: string) => `${what}-${randomBytes(4).toString('hex')}`;
    before(async () => {
      subject = await make();
      [a, b] = subject.members;
    });
    after(() => subject?.cleanup());

    it('lock: one holder of a key at a time, across members, in turn', async () => {
      const k = key('lock');
      const held = gate();
      const events: string[] = [];
      let firstEntered!: () => void;
      const entered = new Promise<void>((resolve) => (firstEntered = resolve));
      const first = a.lock.run(k, async () => {
        events.push('a in');
        firstEntered();
        await held.opened;
        events.push('a out');
        return 'first';
      });
      await entered;
      const second = b.lock.run(k, async () => {
        events.push('b in');
        return 'second';
      });
      // A round trip of b's answered after its first try for the key (the same connection, or the same
      // in-order channel): by now a lock that let b in would have.
      await b.counter.hit(key('round-trip'), 1000);
      await b.generations.current(key('round-trip'));
      events.push('released');
      held.open();
      expect(await first).to.equal('first');
      expect(await second).to.equal('second');
      expect(events).to.deep.equal(['a in', 'released', 'a out', 'b in']);
    });

    it('lock: a key held does not hold up another key', async () => {
      const held = gate();
      const k = key('held');
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      const holding = a.lock.run(k, async () => {
        entered();
        await held.opened;
      });
      await inside;
      expect(await b.lock.run(key('other'), async () => 'through')).to.equal('through');
      held.open();
      await holding;
    });

    it('lock: a failing holder passes its error on and releases the key', async () => {
      const k = key('fail');
      let error: unknown;
      try {
        await a.lock.run(k, async () => {
          throw new Error('holder failed');
        });
      } catch (err) {
        error = err;
      }
      expect((error as Error).message).to.equal('holder failed');
      expect(await b.lock.run(k, async () => 'after')).to.equal('after');
    });

    it('generations: steady until a bump; a bump by one member is seen by the other once it resolves', async () => {
      const repo = key('repo');
      const before = await b.generations.current(repo);
      expect(before).to.be.a('number');
      expect(await a.generations.current(repo)).to.equal(before);
      await a.generations.bump(repo);
      const after = await b.generations.current(repo);
      expect(after).to.be.a('number').and.not.equal(before);
      expect(await a.generations.current(repo)).to.equal(after);
      expect(await b.generations.current(key('untouched'))).to.be.a('number');
      expect(await b.generations.current(repo), 'no bump since').to.equal(after);
    });

    it('rate counter: every member counts in one window per key; amount 0 only reads', async () => {
      const k = key('rate');
      const windowMs = 60_000;
      expect((await a.counter.hit(k, windowMs))!.count).to.equal(1);
      expect((await b.counter.hit(k, windowMs))!.count).to.equal(2);
      expect((await a.counter.hit(k, windowMs, 3))!.count).to.equal(5);
      const read = (await b.counter.hit(k, windowMs, 0))!;
      expect(read.count).to.equal(5);
      expect(read.resetMs).to.be.greaterThan(0).and.at.most(windowMs);
      expect((await b.counter.hit(key('rate-other'), windowMs))!.count, 'another key').to.equal(1);
    });

    it('announcements: a watcher hears the current value, each change in order, and the withdrawal; not after it stops', async () => {
      const k = key('announce');
      await a.announcements.announce(k, 'one', 10_000);
      const heard: Array<string | undefined> = [];
      const others: Array<string | undefined> = [];
      const stop = await b.announcements.watch(k, (v) => heard.push(v));
      const stopOther = await b.announcements.watch(k, (v) => others.push(v));
      expect(heard).to.deep.equal(['one']);
      await a.announcements.announce(k, 'two', 10_000);
      await a.announcements.withdraw(k);
      await waitFor(() => heard.includes(undefined), 'the withdrawal heard', 5_000);
      // A watcher may hear a value twice (it subscribed while it changed), never out of order.
      expect(heard.filter((v, i) => v !== heard[i - 1])).to.deep.equal(['one', 'two', undefined]);
      stop();
      await a.announcements.announce(k, 'three', 10_000);
      await waitFor(() => others.includes('three'), 'the other watcher hears on', 5_000);
      expect(heard.at(-1), 'a stopped watcher hears nothing more').to.equal(undefined);
      stopOther();
      const unknown: Array<string | undefined> = [];
      (await a.announcements.watch(key('never'), (v) => unknown.push(v)))();
      expect(unknown).to.deep.equal([undefined]);
    });

    it('announcements: a value not announced again within its time-to-live is gone', async () => {
      const k = key('ttl');
      await a.announcements.announce(k, 'short', 100);
      const current = async () => {
        let value: string | undefined = 'unset';
        (await b.announcements.watch(k, (v) => (value = v)))();
        return value;
      };
      await waitFor(async () => (await current()) === undefined, 'the value to expire', 5_000);
      expect(await current()).to.equal(undefined);
    });

    it('rate counter: a window that ended starts again from nothing', async () => {
      const k = key('window');
      const windowMs = 100;
      expect((await a.counter.hit(k, windowMs, 7))!.count).to.equal(7);
      // Waits on the condition (bounded by the test's timeout): the count is back to nothing once the window ends.
      let count = Infinity;
      const started = Date.now();
      while (count !== 0 && Date.now() - started < 5_000) {
        count = (await b.counter.hit(k, windowMs, 0))!.count;
        if (count !== 0) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(count).to.equal(0);
      expect(Date.now() - started).to.be.at.least(windowMs - 5);
    });
  });
}
