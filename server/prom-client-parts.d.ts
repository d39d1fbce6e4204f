// prom-client's files by path (server/prometheus.ts): CommonJS without types of their own; prometheus.ts
// gives each the type of what prom-client's entry exports under that name.
declare module 'prom-client/lib/*' {
  const part: unknown;
  export default part;
}
