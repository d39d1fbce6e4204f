// RunLedger: per rule, the run in progress (which process, since when, its last heartbeat) and the last
// HISTORY runs, one document in storage changed only under the lock replication:<rule>. That lock and
// the heartbeat make one run per rule at a time across processes and replicas: a run is claimed when no
// live one holds the rule, and a run whose process stopped saying it is alive (killed, its host gone)
// may be claimed again: the resumed run skips what the first one copied.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Lock, StorageDriver } from '../storage/index.ts';
import { paths } from './paths.ts';
import type { StopReason } from './errors.ts';

export const HISTORY = 20;
/** Failures kept in words per run: enough to see what went wrong, bounded. */
export const MAX_FAILURES = 20;

export type Trigger = 'manual' | 'schedule' | 'push' | 'resume';

export interface RunCounts {
  /** Tags copied (or moved to a new digest). */
  copied: number;
  /** Tags whose destination already named the source's digest. */
  skipped: number;
  /** Tags that could not be copied. */
  failed: number;
  /** Bytes sent: blobs uploaded and manifests written. */
  bytes: number;
}

export interface RunRecord extends RunCounts {
  id: string;
  trigger: Trigger;
  startedAt: string;
  finishedAt: string;
  /** succeeded: every tag; partial: some failed; stopped: the run ended early (reason, message). */
  outcome: 'succeeded' | 'partial' | 'stopped';
  reason?: StopReason;
  message?: string;
  failures: string[];
}

export interface ActiveRun extends RunCounts {
  id: string;
  trigger: Trigger;
  by: string;
  startedAt: string;
  heartbeatAt: string;
}

export interface Ledger {
  running?: ActiveRun;
  history: RunRecord[];
}

export class RunLedger {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    /** A run silent for this long counts as interrupted. */
    private readonly staleMs: number,
  ) {}

  async read(rule: string): Promise<Ledger> {
    const stored = await this.driver.getContent(paths.ledger(rule));
    return stored ? (JSON.parse(stored.toString('utf8')) as Ledger) : { history: [] };
  }

  /** Whether the ledger's run is alive (its process said so lately). */
  isLive(ledger: Ledger, now = Date.now()): boolean {
    return ledger.running !== undefined && now - Date.parse(ledger.running.heartbeatAt) < this.staleMs;
  }

  /**
   * Claims the rule for a new run unless a live one holds it or `wanted` (given the ledger) says no; the
   * run, or undefined. An interrupted run's claim becomes a 'resume'.
   */
  claim(rule: string, trigger: Trigger, wanted: (ledger: Ledger) => boolean = () => true): Promise<ActiveRun | undefined> {
    return this.lock.run(`replication:${rule}`, async () => {
      const ledger = await this.read(rule);
      if (this.isLive(ledger) || !wanted(ledger)) return undefined;
      const now = new Date().toISOString();
      const run: ActiveRun = {
        id: randomUUID(),
        trigger: ledger.running ? 'resume' : trigger,
        by: `${hostname()}/${process.pid}`,
        startedAt: now,
        heartbeatAt: now,
        copied: 0,
        skipped: 0,
        failed: 0,
        bytes: 0,
      };
      await this.write(rule, { ...ledger, running: run });
      return run;
    });
  }

  /** Says the run is alive, with its counts so far; false when it no longer holds the rule. */
  heartbeat(rule: string, run: ActiveRun): Promise<boolean> {
    return this.lock.run(`replication:${rule}`, async () => {
      const ledger = await this.read(rule);
      if (ledger.running?.id !== run.id) return false;
      await this.write(rule, { ...ledger, running: { ...run, heartbeatAt: new Date().toISOString() } });
      return true;
    });
  }

  async finish(rule: string, run: ActiveRun, record: Omit<RunRecord, 'id' | 'trigger' | 'startedAt' | 'finishedAt'>): Promise<RunRecord> {
    const done: RunRecord = { id: run.id, trigger: run.trigger, startedAt: run.startedAt, finishedAt: new Date().toISOString(), ...record, failures: record.failures.slice(0, MAX_FAILURES) };
    await this.lock.run(`replication:${rule}`, async () => {
      const ledger = await this.read(rule);
      const { running, ...rest } = ledger;
      await this.write(rule, { ...rest, ...(running && running.id !== run.id ? { running } : {}), history: [done, ...ledger.history].slice(0, HISTORY) });
    });
    return done;
  }

  async remove(rule: string): Promise<void> {
    await this.driver.delete(paths.ledger(rule)).catch(() => false);
  }

  private write(rule: string, ledger: Ledger): Promise<void> {
    return this.driver.putContent(paths.ledger(rule), JSON.stringify(ledger));
  }
}
