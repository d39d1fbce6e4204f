// Prometheus metrics: requests by route and status, latency, bytes in and out, uploads in progress.
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { aggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from './prometheus.ts';
import type { Context, Next } from 'koa';
import { directIO, KERNEL_MS_PER_MIB, writePath } from '../storage/index.ts';
import type { RunSummary } from '../replication/index.ts';

export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'berth_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'HTTP request latency by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [this.registry],
  });
  private readonly bytesIn = new Counter({
    name: 'berth_http_received_bytes_total',
    help: 'Request body bytes received',
    registers: [this.registry],
  });
  private readonly bytesOut = new Counter({
    name: 'berth_http_sent_bytes_total',
    help: 'Response body bytes sent',
    registers: [this.registry],
  });
  private readonly uploads = new Gauge({
    name: 'berth_uploads_in_progress',
    help: 'Blob upload requests streaming data right now',
    registers: [this.registry],
  });
  // Per mirror (its prefix): what was served from the cache, fetched, served stale, and what failed upstream.
  private readonly mirrorEvents = this.counter(
    'berth_mirror_requests_total',
    'Pull-through cache lookups by mirror and outcome: hit (served from the cache), miss (fetched upstream), stale (served cached while the upstream failed), upstream_error',
    ['mirror', 'outcome'],
  );
  private readonly mirrorBytes = this.counter('berth_mirror_fetched_bytes_total', 'Blob bytes fetched from each mirror\'s upstream', ['mirror']);
  /** The mirror room's counters (MirrorMetrics). */
  readonly mirror = {
    hit: (mirror: string) => this.mirrorEvents.inc({ mirror, outcome: 'hit' }),
    miss: (mirror: string) => this.mirrorEvents.inc({ mirror, outcome: 'miss' }),
    stale: (mirror: string) => this.mirrorEvents.inc({ mirror, outcome: 'stale' }),
    upstreamError: (mirror: string) => this.mirrorEvents.inc({ mirror, outcome: 'upstream_error' }),
    bytesFetched: (mirror: string, n: number) => this.mirrorBytes.inc({ mirror }, n),
  };

  // Per replication rule (their number is bounded by MAX_RULES): runs by outcome, tags by what a run did with
  // them, bytes copied.
  private readonly replicationRuns = this.counter(
    'berth_replication_runs_total',
    'Replication runs finished, by rule, direction and outcome (succeeded, partial, stopped)',
    ['rule', 'direction', 'outcome'],
  );
  private readonly replicationTags = this.counter(
    'berth_replication_tags_total',
    'Tags replication runs looked at, by rule and result: copied, skipped (the destination had it), failed',
    ['rule', 'result'],
  );
  private readonly replicationBytes = this.counter('berth_replication_bytes_total', 'Manifest and blob bytes replication runs copied, by rule', ['rule']);

  /** Counts a finished replication run. */
  replicationFinished(run: RunSummary): void {
    this.replicationRuns.inc({ rule: run.rule, direction: run.direction, outcome: run.outcome });
    for (const result of ['copied', 'skipped', 'failed'] as const) this.replicationTags.inc({ rule: run.rule, result }, run[result]);
    this.replicationBytes.inc({ rule: run.rule }, run.bytes);
  }

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[]): InstanceType<typeof Counter<L>> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  constructor() {
    collectDefaultMetrics(this.registry, 'berth_');
    // How large blobs reach a disk (BERTH_DIRECT_IO): bytes written with O_DIRECT, and what `auto` last measured.
    new Gauge({
      name: 'berth_blob_direct_written_bytes',
      help: 'Blob bytes this process wrote with O_DIRECT since it started (BERTH_DIRECT_IO)',
      registers: [this.registry],
      collect() {
        this.set(directIO.bytesWritten);
      },
    });
    new Gauge({
      name: 'berth_blob_page_cache_kernel_ms_per_mib',
      help: `Kernel CPU per MiB that the last sample of large writes through the page cache cost this process (BERTH_DIRECT_IO=auto writes directly above ${KERNEL_MS_PER_MIB})`,
      registers: [this.registry],
      collect() {
        if (writePath.lastSampleMsPerMiB !== undefined) this.set(writePath.lastSampleMsPerMiB);
      },
    });
  }

  /** In a cluster worker, lets the primary's AggregatorRegistry ask for this registry; elsewhere nothing. */
  async joinCluster(): Promise<void> {
    if (!cluster.isWorker) return;
    const AggregatorRegistry = await aggregatorRegistry();
    AggregatorRegistry.setRegistries([this.registry]);
    // Constructing one installs prom-client's worker-side listener.
    new AggregatorRegistry();
  }

  /** Records every request once its response has been sent (or the client went away). */
  middleware() {
    return async (ctx: Context, next: Next): Promise<void> => {
      const started = process.hrtime.bigint();
      ctx.res.once('close', () => {
        const route = String(ctx.state.route ?? 'other');
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        this.requests.inc({ method: ctx.method, route, status: String(ctx.status) });
        this.latency.observe({ method: ctx.method, route }, seconds);
        const sent = ctx.res.getHeader('Content-Length');
        if (ctx.method !== 'HEAD' && sent !== undefined) this.bytesOut.inc(Number(sent));
      });
      await next();
    };
  }

  bytesReceived(n: number): void {
    this.bytesIn.inc(n);
  }

  uploadStarted(): void {
    this.uploads.inc();
  }

  uploadEnded(): void {
    this.uploads.dec();
  }

  /** This process's metrics, or, in a cluster worker, every worker's, gathered by the primary. */
  async render(): Promise<{ type: string; body: string }> {
    if (!cluster.isWorker) return { type: this.registry.contentType, body: await this.registry.metrics() };
    const id = randomUUID();
    return new Promise((resolve) => {
      const onMessage = (message: unknown) => {
        if (typeof message === 'object' && message !== null && (message as MetricsReply).berthMetrics === 'reply' && (message as MetricsReply).id === id) {
          process.off('message', onMessage);
          resolve({ type: (message as MetricsReply).type, body: (message as MetricsReply).text });
        }
      };
      process.on('message', onMessage);
      process.send!({ berthMetrics: 'request', id } satisfies MetricsRequest);
    });
  }
}

export interface MetricsRequest {
  berthMetrics: 'request';
  id: string;
}

export interface MetricsReply {
  berthMetrics: 'reply';
  id: string;
  text: string;
  type: string;
}

export function isMetricsRequest(message: unknown): message is MetricsRequest {
  return typeof message === 'object' && message !== null && (message as MetricsRequest).berthMetrics === 'request';
}
