// What storage tells a listener after a change is made (and after a pull is served): the facts an event
// needs, nothing about who listens. The server injects the listener (the webhooks' event source); storage
// never imports it, and a listener's failure is its own to report.

/** The request that asked for a change, as the server describes it (Distribution's event `request` and `actor`). */
export interface Requester {
  id: string;
  addr: string;
  host: string;
  method: string;
  useragent: string;
  /** Who made it (a user, robot or token's subject); absent when anonymous or in open mode. */
  actor?: string;
}

/**
 * Who asked, read only when a listener makes an event of it (a pull no endpoint wants costs nothing more).
 * Storage carries it from the caller to the listener untouched; a change no request caused has none.
 */
export type RequestedBy = () => Requester;

/** A manifest stored under a repository (with the tag it was pushed to, if any). */
export interface ManifestFacts {
  name: string;
  digest: string;
  mediaType: string;
  size: number;
  tag?: string;
  by?: RequestedBy;
}

/** A tag removed (with the digest it named), or a manifest deleted (with the tags that named it). */
export interface ManifestDeletion {
  name: string;
  digest?: string;
  tag?: string;
  by?: RequestedBy;
}

export interface StorageListener {
  /** After a manifest push is durable; the push waits for it. */
  manifestPushed?(facts: ManifestFacts): Promise<void>;
  /** After a client's delete of a tag or a manifest, or retention's delete of a tag. */
  manifestDeleted?(deletion: ManifestDeletion): Promise<void>;
  /** After a client's delete of a blob from a repository (garbage collection's unlinks are not announced one by one). */
  blobDeleted?(facts: { name: string; digest: string; by?: RequestedBy }): Promise<void>;
  /** A manifest read for a client; not waited for (a pull must not wait on a listener). */
  manifestPulled?(facts: ManifestFacts): void;
  /** After a collection that was not a dry run, with its counts. */
  garbageCollected?(summary: Record<string, unknown>): Promise<void>;
}

/** Several listeners as one (storage holds one): each told in turn, each one's failure its own. */
export function allOf(...listeners: StorageListener[]): StorageListener {
  const each = <K extends keyof StorageListener>(key: K) => listeners.map((l) => l[key]?.bind(l)).filter((f) => f !== undefined) as Array<NonNullable<StorageListener[K]>>;
  const pushed = each('manifestPushed');
  const deleted = each('manifestDeleted');
  const blobDeleted = each('blobDeleted');
  const pulled = each('manifestPulled');
  const collected = each('garbageCollected');
  return {
    manifestPushed: async (facts) => void (await Promise.allSettled(pushed.map((f) => f(facts)))),
    manifestDeleted: async (deletion) => void (await Promise.allSettled(deleted.map((f) => f(deletion)))),
    blobDeleted: async (facts) => void (await Promise.allSettled(blobDeleted.map((f) => f(facts)))),
    manifestPulled: (facts) => pulled.forEach((f) => f(facts)),
    garbageCollected: async (summary) => void (await Promise.allSettled(collected.map((f) => f(summary)))),
  };
}
