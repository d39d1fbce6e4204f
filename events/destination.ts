// Where a webhook may be sent. Private, loopback, link-local (and other non-public) addresses are refused
// unless BERTH_WEBHOOK_ALLOW names them: a registry user must not make the server probe its own network.
// A name is resolved and every address it has checked, when the endpoint is added and again at each
// connection (the lookup handed to http.request), so a name that re-resolves elsewhere (DNS rebinding)
// gains nothing.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { WebhookError } from './errors.ts';

const REFUSED_V4: Array<[string, number, string]> = [
  ['0.0.0.0', 8, 'this network'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared (carrier-grade NAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'protocol assignments'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];
const REFUSED_V6: Array<[string, number, string]> = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['64:ff9b::', 96, 'NAT64'],
  ['fc00::', 7, 'unique local (private)'],
  ['fe80::', 10, 'link-local'],
  ['ff00::', 8, 'multicast'],
];

const RANGES = [...REFUSED_V4.map((r) => [...r, 'ipv4'] as const), ...REFUSED_V6.map((r) => [...r, 'ipv6'] as const)].map(([net, prefix, kind, family]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, family);
  return { list, kind, family };
});

/** Which kind of non-public range an address is in, or undefined for a public one. */
export function nonPublicRange(address: string): string | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return nonPublicRange(mapped[1]!);
  const family = isIP(address);
  if (family === 0) return 'not an address';
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const range of RANGES) if (range.family === type && range.list.check(address, type)) return range.kind;
  // An IPv4-mapped address written in hex (::ffff:7f00:1) is as good as its IPv4 form: refused whole.
  if (family === 6 && /^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/i.test(address)) return 'IPv4-mapped';
  return undefined;
}

export class DestinationPolicy {
  constructor(
    /** BERTH_WEBHOOK_ALLOW: addresses allowed although not public. */
    private readonly allow?: BlockList,
    private readonly resolve: (host: string, done: (err: Error | null, addresses: LookupAddress[]) => void) => void = (host, done) =>
      dnsLookup(host, { all: true, verbatim: true }, done),
  ) {}

  /** Why this address may not be reached, or undefined when it may. */
  refusal(address: string): string | undefined {
    const kind = nonPublicRange(address);
    if (kind === undefined) return undefined;
    const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
    if (this.allow?.check(address, family)) return undefined;
    return `${address} is a ${kind} address, which BERTH_WEBHOOK_ALLOW does not name`;
  }

  /** Resolves the URL's host and checks every address (for adding an endpoint). */
  async check(url: URL): Promise<void> {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const addresses = isIP(host) ? [host] : await this.addresses(host);
    for (const address of addresses) {
      const reason = this.refusal(address);
      if (reason) throw new WebhookError('DESTINATION_REFUSED', `${url.host}: ${reason}`);
    }
  }

  /** Checks an address literal in a URL (a connection to it asks no lookup). */
  checkLiteral(url: URL): string | undefined {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    return isIP(host) ? this.refusal(host) : undefined;
  }

  /** The lookup for http.request: resolves, refuses the connection if any address is refused, else answers as asked. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.resolve(hostname, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const refused = addresses.map((a) => this.refusal(a.address)).find((r) => r !== undefined);
      if (refused || addresses.length === 0) {
        return callback(new WebhookError('DESTINATION_REFUSED', `${hostname}: ${refused ?? 'no address'}`), '', 0);
      }
      const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses;
      if (options.all) return (callback as unknown as (e: null, all: LookupAddress[]) => void)(null, wanted);
      const first = wanted[0] ?? addresses[0]!;
      callback(null, first.address, first.family);
    });
  };

  private addresses(host: string): Promise<string[]> {
    return new Promise((resolve, reject) =>
      this.resolve(host, (err, addresses) => {
        if (err) reject(new WebhookError('INVALID', `${host} does not resolve: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
        else resolve(addresses.map((a) => a.address));
      }),
    );
  }
}
