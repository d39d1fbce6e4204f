// The signature every delivery carries, and how a receiver checks it: HMAC-SHA256 with the endpoint's
// secret over "<timestamp>.<body>" (the timestamp in whole seconds since 1970, as sent in its own header),
// so that a captured delivery cannot be replayed later with a new timestamp.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Berth-Webhook-Signature';
export const TIMESTAMP_HEADER = 'Berth-Webhook-Timestamp';

/** The signature header's value: `sha256=` and the hex HMAC. */
export function signDelivery(secret: string, timestamp: string, body: Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

/**
 * What a receiver does: recompute the signature over the body exactly as received, compare in constant
 * time, and refuse a timestamp further than `toleranceSeconds` from its clock.
 */
export function verifyDelivery(
  secret: string,
  headers: { timestamp?: string; signature?: string },
  body: Buffer,
  toleranceSeconds = 300,
  nowMs = Date.now(),
): boolean {
  const { timestamp, signature } = headers;
  if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return false;
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(signDelivery(secret, timestamp, body));
  const presented = Buffer.from(signature);
  return expected.length === presented.length && timingSafeEqual(expected, presented);
}
