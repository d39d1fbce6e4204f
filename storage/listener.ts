// What storage tells a listener after a change is made (and after a pull is served): the facts an event
// needs, nothing about who listens. The server injects the listener (the webhooks' event source); storage
// never imports it, and a listener's failure is its own to report.

/** A manifest stored under a repository (with the tag it was pushed to, if any). */
export interface ManifestFacts {
  name: string;
  digest: string;
  mediaType: string;
  size: number;
  tag?: string;
}

/** A tag removed (with the digest it named), or a manifest deleted (with the tags that named it). */
export interface ManifestDeletion {
  name: string;
  digest?: string;
  tag?: string;
}

export interface StorageListener {
  /** After a manifest push is durable; the push waits for it. */
  manifestPushed?(facts: ManifestFacts): Promise<void>;
  /** After a client's delete of a tag or a manifest, or retention's delete of a tag. */
  manifestDeleted?(deletion: ManifestDeletion): Promise<void>;
  /** After a client's delete of a blob from a repository (garbage collection's unlinks are not announced one by one). */
  blobDeleted?(facts: { name: string; digest: string }): Promise<void>;
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
