// Who the client is, behind trusted proxies. X-Forwarded-For grows from the left: each proxy appends the
// address it saw, so only the entries our own proxies wrote (the rightmost ones) can be believed; whatever
// the client sent is on their left. This picks the address as Express's `trust proxy` and nginx's
// `real_ip_recursive` do, and makes it ctx.ip for every limit and audit line.
import type { Context, Next } from 'koa';
import { isIP, type BlockList } from 'node:net';
import { trustedProxyList, type Config } from './config.ts';

export type ProxyTrust = { kind: 'none' } | { kind: 'hops'; hops: number } | { kind: 'ranges'; proxies: BlockList };

export function proxyTrust(config: Config): ProxyTrust {
  if (!config.trustProxy) return { kind: 'none' };
  const proxies = trustedProxyList(config);
  return proxies ? { kind: 'ranges', proxies } : { kind: 'hops', hops: config.trustedProxyHops ?? 1 };
}

/** `::ffff:10.0.0.1` is the IPv4 address 10.0.0.1 (a dual-stack socket reports IPv4 peers so). */
function plain(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

function isTrusted(proxies: BlockList, address: string): boolean {
  const version = isIP(address);
  return version !== 0 && proxies.check(address, version === 4 ? 'ipv4' : 'ipv6');
}

/** The comma-separated entries of a header that may be sent more than once, left to right. */
function entries(value: string | string[] | undefined): string[] {
  const joined = Array.isArray(value) ? value.join(',') : (value ?? '');
  return joined
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
}

/**
 * The client's address and whether the forwarding headers came from a trusted proxy. An entry that is not
 * an address ("unknown", garbage) is never taken: the peer stands instead.
 */
export function clientAddress(trust: ProxyTrust, peer: string, forwardedFor: string | string[] | undefined): { address: string; forwarded: boolean } {
  const socketAddress = plain(peer);
  if (trust.kind === 'none') return { address: socketAddress, forwarded: false };
  const chain = entries(forwardedFor).map(plain);
  if (trust.kind === 'hops') {
    const chosen = chain[Math.max(0, chain.length - trust.hops)];
    return { address: chosen !== undefined && isIP(chosen) ? chosen : socketAddress, forwarded: true };
  }
  if (!isTrusted(trust.proxies, socketAddress)) return { address: socketAddress, forwarded: false };
  let address = socketAddress;
  for (let i = chain.length - 1; i >= 0; i--) {
    const entry = chain[i]!;
    if (!isIP(entry)) break;
    address = entry;
    if (!isTrusted(trust.proxies, entry)) break;
  }
  return { address, forwarded: true };
}

/**
 * Sets ctx.ip, and leaves Koa only the forwarding headers it may believe: X-Forwarded-Proto as our nearest
 * proxy wrote it (its rightmost value), or none when the peer is not a trusted proxy. X-Forwarded-Host is
 * dropped always: the proxy passes Host on, and a client-chosen host would end up in the token realm
 * and the pages' links.
 */
export function forwardedClient(config: Config) {
  const trust = proxyTrust(config);
  return async (ctx: Context, next: Next): Promise<void> => {
    const headers = ctx.req.headers;
    delete headers['x-forwarded-host'];
    const { address, forwarded } = clientAddress(trust, ctx.req.socket.remoteAddress ?? '', headers['x-forwarded-for']);
    ctx.request.ip = address;
    const proto = forwarded ? entries(headers['x-forwarded-proto']).pop() : undefined;
    if (proto === undefined) delete headers['x-forwarded-proto'];
    else headers['x-forwarded-proto'] = proto;
    await next();
  };
}
