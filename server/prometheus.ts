// prom-client, loaded by its parts. Its entry file also loads its Pushgateway (https, zlib), and its CPU
// metric loads the OpenTelemetry API for exemplars we never record: together about 1.4 MiB of heap and
// 60 more modules in every process, a third of the idle server's growth over bare Node. So the classes
// come from their own files, the default metrics are prom-client's own but for CPU, and CPU is counted
// here with the same names. prom-client is pinned in package.json: these paths are its files, not its API.
// They are imported statically, so the build (build.mjs) bundles them with the rest of the server.
import type client from 'prom-client';
import RegistryPart from 'prom-client/lib/registry.js';
import CounterPart from 'prom-client/lib/counter.js';
import GaugePart from 'prom-client/lib/gauge.js';
import HistogramPart from 'prom-client/lib/histogram.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import eventLoopLag from 'prom-client/lib/metrics/eventLoopLag.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import version from 'prom-client/lib/metrics/version.js';
import gc from 'prom-client/lib/metrics/gc.js';

export const Registry = RegistryPart as typeof client.Registry;
export const Counter = CounterPart as typeof client.Counter;
export const Gauge = GaugePart as typeof client.Gauge;
export const Histogram = HistogramPart as typeof client.Histogram;
export type Registry = client.Registry;

/**
 * The cluster aggregation (primary and workers), loaded only in a process run with --workers. Imported,
 * not required: it must share the bundle's copy of the registry class, which it checks with instanceof.
 */
export async function aggregatorRegistry(): Promise<typeof client.AggregatorRegistry> {
  return (await import('prom-client/lib/cluster.js')).default as typeof client.AggregatorRegistry;
}

/** prom-client's default metrics (lib/defaultMetrics.js) but processCpuTotal. */
const DEFAULT_METRICS: unknown[] = [
  processStartTime,
  osMemoryHeap,
  processOpenFileDescriptors,
  processMaxFileDescriptors,
  eventLoopLag,
  processResources,
  processHandles,
  processRequests,
  heapSizeAndUsed,
  heapSpacesSizeAndUsed,
  version,
  gc,
];

type DefaultMetric = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

/** prom-client's default metrics with `prefix`, as collectDefaultMetrics would register them. */
export function collectDefaultMetrics(registry: Registry, prefix: string): void {
  const config = { prefix, eventLoopMonitoringPrecision: 10 };
  for (const metric of DEFAULT_METRICS) (metric as DefaultMetric)(registry, config);
  processCpu(registry, prefix);
}

/** process_cpu_{user,system,}_seconds_total, counted from the process's start as prom-client counts them. */
function processCpu(registry: Registry, prefix: string): void {
  let last = { user: 0, system: 0 };
  const user = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers: [registry],
    collect() {
      const now = process.cpuUsage();
      const userSeconds = (now.user - last.user) / 1e6;
      const systemSeconds = (now.system - last.system) / 1e6;
      last = now;
      user.inc(userSeconds);
      system.inc(systemSeconds);
      total.inc(userSeconds + systemSeconds);
    },
  });
  const system = new Counter({ name: `${prefix}process_cpu_system_seconds_total`, help: 'Total system CPU time spent in seconds.', registers: [registry] });
  const total = new Counter({ name: `${prefix}process_cpu_seconds_total`, help: 'Total user and system CPU time spent in seconds.', registers: [registry] });
}
