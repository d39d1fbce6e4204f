// What every response tells a browser, and which requests a browser makes on another site's behalf are
// refused. Both are middleware for the whole server: a header or a check that only some routes carry is
// one that a new route forgets (the search's partial results once went out without the page's headers).
import type { Context, Next } from 'koa';

/** The same on every response: pages, partial results, JSON, images, registry answers, errors. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'same-origin',
};

export function securityHeaders() {
  return async (ctx: Context, next: Next): Promise<void> => {
    // Set before the route runs, so that an error answer (mapped further in) carries them too.
    ctx.set(SECURITY_HEADERS);
    await next();
  };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Whether a browser sent this request for a page of another site. Sec-Fetch-Site, which browsers set and
 * pages cannot, decides when present (only `same-origin`, or `none` for what the user did themselves, may
 * write); else an Origin must be this server's (its Host, whatever the scheme a proxy ended, or the
 * public URL); a request with neither is not a browser's (registry clients, curl), and forms still need
 * their CSRF token.
 */
export function isCrossSite(ctx: Context, publicUrl?: string): boolean {
  const site = ctx.get('Sec-Fetch-Site');
  if (site) return site !== 'same-origin' && site !== 'none';
  const origin = ctx.get('Origin');
  if (!origin) return false;
  if (publicUrl && origin === new URL(publicUrl).origin) return false;
  try {
    return new URL(origin).host !== ctx.host;
  } catch {
    // `null` (a sandboxed frame, a redirect across origins) and anything unparsable say nothing good.
    return true;
  }
}

/**
 * Refuses a state-changing request a browser makes for another site: sign-up, sign-in, forms, tokens
 * and registry writes alike, before any body is read. `refusal` is the error thrown, in the server's shape.
 */
export function refuseCrossSite(publicUrl: string | undefined, refusal: () => Error) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (!SAFE_METHODS.has(ctx.method) && isCrossSite(ctx, publicUrl)) throw refusal();
    await next();
  };
}
