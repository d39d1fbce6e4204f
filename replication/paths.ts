// Where replication keeps its state in storage, in one place (see docs/architecture.md, Storage layout).
export const paths = {
  /** Every rule, one document (passwords sealed). */
  rules: '/replication/rules.json',
  /** A rule's run in progress (who, heartbeat) and its bounded history. */
  ledger: (rule: string) => `/replication/runs/${rule}.json`,
};
