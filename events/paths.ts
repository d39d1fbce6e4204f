// Where the webhooks keep their state in storage, in one place (see docs/architecture.md, Storage layout).
const queue = (id: string) => `/webhooks/queue/${id}`;

export const paths = {
  endpoints: '/webhooks/endpoints.json',
  /** A random value rewritten with every change of the endpoints: processes reread them when it differs. */
  stamp: '/webhooks/stamp',
  queue,
  /** The next sequence number to be written, and the count of events dropped because the queue was full. */
  tail: (id: string) => `${queue(id)}/tail.json`,
  /** The next sequence number to be delivered, and the attempts made at it so far. */
  head: (id: string) => `${queue(id)}/head.json`,
  /** Zero-padded, so that a listing is in sequence order. */
  item: (id: string, seq: number) => `${queue(id)}/events/${String(seq).padStart(16, '0')}.json`,
  log: (id: string) => `/webhooks/log/${id}.json`,
};
