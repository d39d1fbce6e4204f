// Scheduled lifecycle jobs (server/lifecycle.ts): every worker and replica keeps the timers, and the job
// runs once per interval across them, through the shared lock and a stamp in storage.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScheduledJob } from '../../server/lifecycle.ts';
import { FilesystemDriver, LocalLock } from '../../storage/index.ts';

describe('scheduled lifecycle jobs', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-schedule-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('runs once per interval across processes that share the storage and the lock', async () => {
    const driver = new FilesystemDriver(root);
    const lock = new LocalLock();
    let now = Date.parse('2026-11-28T12:00:00Z');
    const runs: string[] = [];
    // Two processes' schedulers: the same job, each with its own timer.
    const [a, b] = ['a', 'b'].map((who) => new ScheduledJob(driver, lock, 'gc', 60_000, async () => void runs.push(who), () => now));

    // Both timers fire at once: one runs, the other finds it done.
    expect(await Promise.all([a!.tick(), b!.tick()])).to.deep.equal([true, false]);
    now += 30_000;
    expect(await b!.tick()).to.equal(false);
    // An interval later (less the drift allowance) the next timer to fire runs it, in either process.
    now += 25_000;
    expect(await b!.tick()).to.equal(true);
    expect(await a!.tick()).to.equal(false);
    expect(runs).to.deep.equal(['a', 'b']);
    expect(JSON.parse((await driver.getContent('/lifecycle/gc.json'))!.toString()).finishedAt).to.equal(new Date(now).toISOString());
  });

  it('a job that fails leaves no stamp, so the next timer tries again', async () => {
    const driver = new FilesystemDriver(root);
    let fail = true;
    const job = new ScheduledJob(driver, new LocalLock(), 'retention', 60_000, async () => {
      if (fail) throw new Error('storage away');
    });
    let error: unknown;
    await job.tick().catch((err: unknown) => (error = err));
    expect((error as Error).message).to.equal('storage away');
    fail = false;
    expect(await job.tick()).to.equal(true);
  });
});
