// Node's HTTP parser copies every socket read of a request body into a new 64 KiB Buffer, and V8 counts
// that memory as external. External memory allocated since the last full collection counts against the
// old generation's limit, and young collections come far less often than a fast upload allocates: so V8
// answered uploads with a full mark-compact every ~30 MB (ten per 256 MiB push, with their marking
// threads a third of the push's CPU), and more often once a burst of small requests had grown the young
// generation. Two things keep those buffers from costing full collections:
// - a young collection (well under a millisecond) every 16 MiB of body frees them while they are young;
// - a wider old-generation growth step leaves room for the MiBs in flight between two of them.
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const RECLAIM_EVERY_BYTES = 16 * 1024 * 1024;
/**
 * The old generation may grow to 5× what survived the last full collection (V8's own factor is 1.1–4, by
 * pace). Bytes in flight count too: eight large uploads at once hold some 30 MiB of body between the socket,
 * the disk writes and the hashing thread, and with 3× (some 25 MiB of room over an 11 MiB heap) that alone
 * started a mark-compact every 40 MiB of body. 5×: a third as many, about 7% more throughput; peak resident
 * memory under that load 179 MiB instead of 166, idle memory unchanged.
 */
const HEAP_GROWING_PERCENT = 400;

type GcFunction = (options?: { type: 'minor' | 'major'; execution: 'sync' }) => void;

let collect: GcFunction | null | undefined;
let sinceCollection = 0;

function collector(): GcFunction | null {
  if (collect !== undefined) return collect;
  try {
    const exposed = (globalThis as { gc?: GcFunction }).gc;
    if (exposed) return (collect = exposed);
    // The flag exposes gc() in contexts made after it is set; the main context's globals stay as they are.
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as GcFunction;
  } catch {
    collect = null; // a runtime without it only loses speed
  }
  return collect;
}

/**
 * Tunes this process's heap for streaming request bodies: called once by a serving process, before it
 * takes requests. A growth factor given on the command line or in NODE_OPTIONS is left as it is.
 */
export function tuneHeapForUploads(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((arg) => /heap[-_]growing[-_]percent/.test(arg));
  if (!given) setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  collector();
}

/** Counts request-body bytes that arrived in fresh buffers; every 16 MiB, frees the young ones. */
export function bodyBytesArrived(bytes: number): void {
  sinceCollection += bytes;
  if (sinceCollection < RECLAIM_EVERY_BYTES) return;
  sinceCollection = 0;
  collector()?.({ type: 'minor', execution: 'sync' });
}

/** A young generation at most this large counts as shrunk back (V8's own starting size is 1 MiB a semi-space). */
const SHRUNK_NEW_SPACE_BYTES = 2 * 1024 * 1024;
const SETTLE_COLLECTIONS = 20;
const SETTLE_SPACING_MS = 100;

/**
 * Full collections once the server listens, until the young generation has shrunk back. Loading the modules
 * leaves megabytes of garbage (source text, parse trees), and its allocation rate grows the young
 * generation to its maximum (8 MiB at --max-semi-space-size=4), which V8 gives back only once its measured
 * allocation rate is low: after some ten collections at idle. So an idle server ran at 75 MiB resident
 * where it needs 66. The collections are spaced (a few milliseconds each) so that requests arriving
 * meanwhile barely notice; a busy server grows the young generation again as it needs.
 */
export function dropStartupGarbage(): void {
  const gc = collector();
  if (!gc) return;
  let left = SETTLE_COLLECTIONS;
  const settle = () => {
    gc({ type: 'major', execution: 'sync' });
    const young = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space');
    if (--left > 0 && young && young.space_size > SHRUNK_NEW_SPACE_BYTES) setTimeout(settle, SETTLE_SPACING_MS).unref();
  };
  settle();
}
