// The replication room's front door: rules (RuleStore), their runs (RunLedger: one at a time per rule
// across processes, history, heartbeat), and the triggers: a manual run, the schedule tick (rules whose
// interval is due, and runs whose process died), and for push rules each push to a matching repository
// (a StorageListener the server adds beside the webhooks'). The copying itself (copy.ts, ends.ts, and the
// clients they drive) is loaded at the first run: a server without rules never carries it.
import type { Lock, SecretSeal, StorageDriver, StorageListener, Storage } from '../storage/index.ts';
import { ReplicationError, RunStopped } from './errors.ts';
import { matchesRepository } from './filters.ts';
import { RunLedger, type ActiveRun, type Ledger, type RunRecord, type Trigger } from './ledger.ts';
import { notFound, RuleStore, viewOf, type Rule, type RuleView } from './rules.ts';
import type { RetrySettings } from './copy.ts';

export { ReplicationError, RunStopped, type ReplicationErrorCode, type StopReason } from './errors.ts';
export { ruleSchema, MAX_RULES, type Rule, type RuleInput, type RuleView } from './rules.ts';
export { HISTORY, type RunRecord, type ActiveRun, type Trigger } from './ledger.ts';
export { matchesRepository, selectTags, tagPasses, platformMatches, REDUCED_FROM } from './filters.ts';

export interface ReplicationLogger {
  info(facts: object, message: string): void;
  warn(facts: object, message: string): void;
}

export interface ReplicationOptions {
  storage: Storage;
  lock: Lock;
  seal: SecretSeal;
  retry: RetrySettings;
  /** How often the schedule is looked at (0: never). */
  tickMs: number;
  /** A run whose process said nothing for this long counts as interrupted. */
  staleMs: number;
  maxManifestBytes: number;
  logger: ReplicationLogger;
  /** Told of each run's end (the server counts it and queues a webhook event); never fails the run. */
  finished?: (summary: RunSummary) => Promise<void>;
}

/** A finished run as the log, the metrics and the webhook event tell it. */
export type RunSummary = {
  rule: string;
  direction: 'pull' | 'push';
  remote: string;
  run: string;
  trigger: Trigger;
  outcome: RunRecord['outcome'];
  reason?: RunRecord['reason'];
  copied: number;
  skipped: number;
  failed: number;
  bytes: number;
};

/** A rule as the CLI, the API and the page show it: its settings, the run in progress, the last runs. */
export interface RuleStatus extends RuleView {
  running?: ActiveRun;
  /** The run in progress stopped saying it is alive: it will be resumed. */
  interrupted?: boolean;
  last?: RunRecord;
  history: RunRecord[];
}

/** A push burst (several tags, an index and its children) becomes one run: pushes within this wait join it. */
const PUSH_SETTLE_MS = 500;
/** How old the rules a push is matched against may be: a push costs no storage read while they are fresh. */
const PUSH_RULES_MAX_AGE_MS = 1000;

export class Replication {
  readonly rules: RuleStore;
  readonly ledger: RunLedger;
  private timer?: NodeJS.Timeout;
  private ticking = false;
  /** Runs this process is executing, by rule. */
  private readonly active = new Map<string, Promise<RunRecord | undefined>>();
  /** Push rules asked for by a push while waiting to settle or while their run goes on. */
  private readonly wanted = new Map<string, NodeJS.Timeout | true>();
  private stopping = false;
  private pushRules?: { at: number; rules: Promise<Rule[]> };

  constructor(private readonly options: ReplicationOptions) {
    const driver: StorageDriver = options.storage.driver;
    this.rules = new RuleStore(driver, options.lock, options.seal);
    this.ledger = new RunLedger(driver, options.lock, options.staleMs);
  }

  /** Starts the schedule tick (a server does; a command does not). */
  start(): void {
    if (this.options.tickMs <= 0) return;
    this.timer = setInterval(() => void this.tick(), this.options.tickMs);
    this.timer.unref();
  }

  /** Stops the tick and waits for this process's runs to end (they stop at their next tag). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    for (const pending of this.wanted.values()) if (pending !== true) clearTimeout(pending);
    this.wanted.clear();
    await Promise.allSettled([...this.active.values()]);
  }

  async list(): Promise<RuleStatus[]> {
    return Promise.all((await this.rules.all()).map((rule) => this.statusOf(rule)));
  }

  async show(name: string): Promise<RuleStatus> {
    const rule = await this.rules.get(name);
    if (!rule) throw notFound(name);
    return this.statusOf(rule);
  }

  async add(input: unknown, createdBy?: string): Promise<RuleView> {
    const added = await this.rules.add(input, createdBy);
    this.pushRules = undefined;
    return viewOf(added);
  }

  async remove(name: string): Promise<RuleView> {
    const removed = await this.rules.remove(name);
    this.pushRules = undefined;
    await this.ledger.remove(name);
    return viewOf(removed);
  }

  /**
   * Starts a run of the rule now (it goes on after the answer); the run as claimed. RUNNING when a live
   * run holds the rule, here or in another process.
   */
  async begin(name: string, trigger: Trigger = 'manual'): Promise<{ run: ActiveRun; done: Promise<RunRecord | undefined> }> {
    const rule = await this.rules.get(name);
    if (!rule) throw notFound(name);
    const run = await this.ledger.claim(name, trigger);
    if (!run) throw new ReplicationError('RUNNING', `a run of ${name} is in progress; see its status`);
    return { run, done: this.execute(rule, run) };
  }

  /** Runs the rule and waits for its record (the command without a server). */
  async runNow(name: string): Promise<RunRecord | undefined> {
    return (await this.begin(name)).done;
  }

  /** One look at every rule: a due interval, or an interrupted run, is claimed (once across processes). */
  async tick(now = Date.now()): Promise<void> {
    if (this.ticking || this.stopping) return;
    this.ticking = true;
    try {
      for (const rule of await this.rules.all()) {
        if (!rule.enabled || this.active.has(rule.name)) continue;
        const due = (ledger: Ledger) => ledger.running !== undefined || (rule.intervalSeconds > 0 && now - lastStart(ledger) >= rule.intervalSeconds * 1000 * 0.9);
        const run = await this.ledger.claim(rule.name, 'schedule', due);
        if (run) void this.execute(rule, run);
      }
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, 'replication schedule tick failed; will try again');
    } finally {
      this.ticking = false;
    }
  }

  /** Push rules with onPush hear of pushes to repositories they copy. */
  listener(): StorageListener {
    return {
      manifestPushed: async (facts) => {
        if (this.stopping) return;
        try {
          const rules = (await this.onPushRules()).filter((r) => r.repositories.some((p) => matchesRepository(facts.name, p)));
          for (const rule of rules) this.want(rule.name);
        } catch (err) {
          this.options.logger.warn({ err: (err as Error).message, repository: facts.name }, 'replication did not hear of a push');
        }
      },
    };
  }

  /** The enabled push rules with onPush, read at most once a PUSH_RULES_MAX_AGE_MS. */
  private onPushRules(): Promise<Rule[]> {
    if (!this.pushRules || Date.now() - this.pushRules.at > PUSH_RULES_MAX_AGE_MS) {
      const rules = this.rules.all().then((all) => all.filter((r) => r.enabled && r.direction === 'push' && r.onPush));
      rules.catch(() => (this.pushRules = undefined));
      this.pushRules = { at: Date.now(), rules };
    }
    return this.pushRules.rules;
  }

  /** A push asked for a run: after the burst settles; if a run is going, once more after it. */
  private want(name: string): void {
    if (this.wanted.has(name)) return;
    if (this.active.has(name)) {
      this.wanted.set(name, true);
      return;
    }
    const timer = setTimeout(() => {
      this.wanted.delete(name);
      this.begin(name, 'push').catch((err: Error) => {
        // Another process runs it: that run may have listed the repository before this push; ask again after.
        if (err instanceof ReplicationError && err.code === 'RUNNING') setTimeout(() => this.want(name), this.options.staleMs / 3).unref();
        else this.options.logger.warn({ rule: name, err: err.message }, 'replication on push did not start');
      });
    }, PUSH_SETTLE_MS);
    timer.unref();
    this.wanted.set(name, timer);
  }

  private async statusOf(rule: Rule): Promise<RuleStatus> {
    const ledger = await this.ledger.read(rule.name);
    return {
      ...viewOf(rule),
      ...(ledger.running ? { running: ledger.running, ...(this.ledger.isLive(ledger) ? {} : { interrupted: true }) } : {}),
      ...(ledger.history[0] ? { last: ledger.history[0] } : {}),
      history: ledger.history,
    };
  }

  private execute(rule: Rule, run: ActiveRun): Promise<RunRecord | undefined> {
    const done = this.copy(rule, run).finally(() => {
      this.active.delete(rule.name);
      if (this.wanted.get(rule.name) === true) {
        this.wanted.delete(rule.name);
        if (!this.stopping) this.want(rule.name);
      }
    });
    this.active.set(rule.name, done);
    return done;
  }

  private async copy(rule: Rule, run: ActiveRun): Promise<RunRecord | undefined> {
    const { logger } = this.options;
    let lost = false;
    let copier: import('./copy.ts').Copier | undefined;
    const beat = setInterval(() => {
      this.ledger.heartbeat(rule.name, { ...run, ...(copier ? countsOf(copier.progress) : {}) }).then(
        (held) => (lost ||= !held),
        (err: Error) => logger.warn({ rule: rule.name, err: err.message }, 'replication heartbeat not written'),
      );
    }, Math.max(1000, this.options.staleMs / 3));
    beat.unref();
    logger.info({ rule: rule.name, run: run.id, trigger: run.trigger }, 'replication run started');
    let stopped: RunStopped | undefined;
    try {
      const [{ Copier }, ends] = await Promise.all([import('./copy.ts'), import('./ends.ts')]);
      const password = await this.rules.password(rule);
      if (rule.remote.sealedPassword !== undefined && password === undefined) {
        throw new RunStopped('refused', 'the remote password cannot be opened: the sealing key (BERTH_WEBHOOK_SECRET_KEY) changed since the rule was added; add it again');
      }
      const credentials = { username: rule.remote.username, password };
      const { storage, maxManifestBytes } = this.options;
      const [source, destination] =
        rule.direction === 'pull'
          ? [ends.remoteSource(rule, credentials, maxManifestBytes), ends.localDestination(storage)]
          : [ends.localSource(storage), ends.remoteDestination(rule, credentials)];
      copier = new Copier(rule, source, destination, this.options.retry, maxManifestBytes, () => !lost && !this.stopping);
      await copier.run();
    } catch (err) {
      stopped = err instanceof RunStopped ? err : new RunStopped('refused', (err as Error).message);
    } finally {
      clearInterval(beat);
    }
    const progress = copier?.progress ?? { copied: 0, skipped: 0, failed: 0, bytes: 0, failures: [] };
    if (lost) {
      logger.warn({ rule: rule.name, run: run.id }, 'replication run lost its claim (silent too long); another process resumes it');
      return undefined;
    }
    const record = await this.ledger.finish(rule.name, run, {
      ...countsOf(progress),
      failures: progress.failures,
      outcome: stopped ? 'stopped' : progress.failed > 0 ? 'partial' : 'succeeded',
      ...(stopped ? { reason: stopped.reason, message: stopped.message } : {}),
    });
    const summary: RunSummary = { rule: rule.name, direction: rule.direction, remote: rule.remote.url, run: run.id, trigger: record.trigger, outcome: record.outcome, ...(record.reason ? { reason: record.reason } : {}), copied: record.copied, skipped: record.skipped, failed: record.failed, bytes: record.bytes };
    logger.info(summary, 'replication run finished');
    await this.options.finished?.(summary).catch((err: Error) => logger.warn({ rule: rule.name, err: err.message }, 'the replication event was not queued'));
    return record;
  }
}

function countsOf(p: { copied: number; skipped: number; failed: number; bytes: number }) {
  return { copied: p.copied, skipped: p.skipped, failed: p.failed, bytes: p.bytes };
}

/** When the rule's last run started (0: never), so that a schedule keeps its rhythm whatever a run takes. */
function lastStart(ledger: Ledger): number {
  const last = ledger.history[0];
  return last ? Date.parse(last.startedAt) : 0;
}
