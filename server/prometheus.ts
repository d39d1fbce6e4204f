// prom-client, loaded by its parts. Its entry file also loads its Pushgateway (https, zlib), and its CPU
// metric loads the OpenTelemetry API for exemplars we never record: together about 1.4 MiB of heap and
// 60 more modules in every process, a third of the idle server's growth over bare Node. So the classes
// come from their own files, the default metrics are prom-client's own but for CPU, and CPU is counted
// here with the same names. prom-client is pinned in package.json: these paths are its files, not its API.
import { createRequire } from 'node:module';
import type client from 'prom-client';

const load = createRequire(import.meta.url);

export const Registry = load('prom-client/lib/registry') as typeof client.Registry;
export const Counter = load('prom-client/lib/counter') as typeof client.Counter;
export const Gauge = load('prom-client/lib/gauge') as typeof client.Gauge;
export const Histogram = load('prom-client/lib/histogram') as typeof client.Histogram;
export type Registry = client.Registry;

/** The cluster aggregation (primary and workers), only in a process run with --workers. */
export const aggregatorRegistry = (): typeof client.AggregatorRegistry => load('prom-client/lib/cluster') as typeof client.AggregatorRegistry;

/** Files of prom-client's default metrics (lib/defaultMetrics.js) but processCpuTotal. */
const DEFAULT_METRICS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
];

type DefaultMetric = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

/** prom-client's default metrics with `prefix`, as collectDefaultMetrics would register them. */
export function collectDefaultMetrics(registry: Registry, prefix: string): void {
  const config = { prefix, eventLoopMonitoringPrecision: 10 };
  for (const name of DEFAULT_METRICS) (load(`prom-client/lib/metrics/${name}`) as DefaultMetric)(registry, config);
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
