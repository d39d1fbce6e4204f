// The request behind a change, as a webhook event names it (Distribution's `request` and `actor`): the
// routes hand it to storage with the change, and storage hands it to its listener untouched.
import type { Context } from 'koa';
import { principalName, principalOf, type TokenClaims } from '../auth/index.ts';
import type { RequestedBy, Requester } from '../storage/index.ts';

/** The request, read when an event is made (after the route has checked access, so its actor is known). */
export function requestedBy(ctx: Context): RequestedBy {
  return () => requesterOf(ctx);
}

function requesterOf(ctx: Context): Requester {
  const claims = ctx.state.claims as TokenClaims | undefined;
  const viewer = ctx.state.viewer as { principal?: Parameters<typeof principalName>[0] } | undefined;
  const principal = claims ? principalOf(claims) : viewer?.principal;
  return {
    id: String(ctx.state.requestId ?? ''),
    addr: ctx.ip,
    host: ctx.host,
    method: ctx.method,
    useragent: ctx.get('User-Agent'),
    ...(principal && principal.kind !== 'anonymous' ? { actor: principalName(principal) } : {}),
  };
}
