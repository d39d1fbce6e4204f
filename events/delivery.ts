// Deliverer: sends each endpoint's queued events, one at a time and in order, to its URL. Each process
// looks now and then (BERTH_WEBHOOK_POLL_MS) at every endpoint, and at once at an endpoint it queued for;
// the queue's head lock makes one process send an event, whichever replica queued it. A failed delivery
// is tried again after a wait that doubles (BERTH_WEBHOOK_RETRY_BASE_MS up to _MAX_MS), and dropped after
// BERTH_WEBHOOK_MAX_ATTEMPTS, the drop recorded. Redirects are not followed; the response body is read
// away, never kept.
import { request as httpRequest } from 'node:http';
import type { DestinationPolicy } from './destination.ts';
import type { Endpoint, EndpointStore } from './endpoints.ts';
import { envelope, EVENTS_MEDIA_TYPE, type RegistryEvent } from './envelope.ts';
import { signDelivery, SIGNATURE_HEADER, TIMESTAMP_HEADER } from './signature.ts';
import type { DeliveryLog, EventQueue, Head } from './queue.ts';

export interface DeliverySettings {
  timeoutMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  pollMs: number;
}

export interface Warn {
  warn(facts: object, message: string): void;
}

/** Events one endpoint's turn sends before the others get theirs. */
const TURN = 50;

interface Outcome {
  ok: boolean;
  status?: number;
  reason?: string;
}

export class Deliverer {
  private readonly running = new Map<string, Promise<void>>();
  /** Endpoints kicked while their turn was running: they go again when it ends. */
  private readonly again = new Set<string>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private poller?: NodeJS.Timeout;
  private stopped = true;

  constructor(
    private readonly endpoints: EndpointStore,
    private readonly queue: EventQueue,
    private readonly log: DeliveryLog,
    private readonly destinations: DestinationPolicy,
    private readonly settings: DeliverySettings,
    private readonly logger: Warn,
  ) {}

  start(): void {
    this.stopped = false;
    const poll = () => {
      this.endpoints.all().then(
        (all) => all.forEach((e) => this.kick(e.id)),
        (err: Error) => this.logger.warn({ err: err.message }, 'webhook endpoints not read; will try again'),
      );
    };
    poll();
    this.poller = setInterval(poll, this.settings.pollMs);
    this.poller.unref();
  }

  /** Stops looking and waits for the deliveries in progress (each bounded by the timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poller);
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    await Promise.allSettled([...this.running.values()]);
  }

  /** Sends what waits for the endpoint, now (or after its turn in progress). */
  kick(endpointId: string): void {
    if (this.stopped) return;
    if (this.running.has(endpointId)) {
      this.again.add(endpointId);
      return;
    }
    const turn = this.turn(endpointId)
      .catch((err: Error) => this.logger.warn({ err: err.message, endpoint: endpointId }, 'webhook delivery stopped; will try again'))
      .finally(() => {
        this.running.delete(endpointId);
        if (this.again.delete(endpointId)) this.kick(endpointId);
      });
    this.running.set(endpointId, turn);
  }

  private async turn(endpointId: string): Promise<void> {
    for (let sent = 0; sent < TURN && !this.stopped; sent++) {
      const endpoint = await this.endpoints.get(endpointId);
      if (!endpoint) return;
      const state = await this.queue.atHead(endpointId, (event, head) => this.deliver(endpoint, event, head));
      if (state === 'idle') return;
      if (state === 'waiting') return this.wakeAtRetry(endpointId);
    }
    if (!this.stopped) this.again.add(endpointId);
  }

  /** A timer for the head's next try (the poll would find it too, later). */
  private async wakeAtRetry(endpointId: string): Promise<void> {
    const due = await this.queue.dueAt(endpointId);
    if (due === undefined || this.stopped) return;
    clearTimeout(this.retryTimers.get(endpointId));
    const timer = setTimeout(() => {
      this.retryTimers.delete(endpointId);
      this.kick(endpointId);
    }, Math.max(0, due - Date.now()));
    timer.unref();
    this.retryTimers.set(endpointId, timer);
  }

  private async deliver(endpoint: Endpoint, event: RegistryEvent | undefined, head: Head): Promise<Head> {
    const passed: Head = { next: head.next + 1, attempts: 0, retryAt: 0 };
    // A number without its file: written by a process that failed between the two writes of an enqueue.
    if (!event) return passed;
    const attempt = head.attempts + 1;
    const outcome = await this.post(endpoint, event, attempt);
    const record = { time: new Date().toISOString(), eventId: event.id, action: event.action, attempt, status: outcome.status, reason: outcome.reason };
    if (outcome.ok) {
      await this.log.append(endpoint.id, { ...record, outcome: 'delivered' });
      return passed;
    }
    if (attempt >= this.settings.maxAttempts) {
      await this.log.append(endpoint.id, { ...record, outcome: 'dropped', reason: `${outcome.reason}; dropped after ${attempt} attempts` });
      return passed;
    }
    await this.log.append(endpoint.id, { ...record, outcome: 'failed' });
    const wait = Math.min(this.settings.retryBaseMs * 2 ** (attempt - 1), this.settings.retryMaxMs);
    return { next: head.next, attempts: attempt, retryAt: Date.now() + wait };
  }

  /** One POST of the event, signed; resolves with what came of it (never throws). */
  private async post(endpoint: Endpoint, event: RegistryEvent, attempt: number): Promise<Outcome> {
    const secret = await this.endpoints.secretOf(endpoint);
    if (secret === undefined) return { ok: false, reason: 'the secret cannot be opened: the sealing key (BERTH_WEBHOOK_SECRET_KEY) changed since it was added' };
    const url = new URL(endpoint.url);
    const refused = this.destinations.checkLiteral(url);
    if (refused) return { ok: false, reason: `refused: ${refused}` };
    const body = envelope([event]);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const headers = {
      'Content-Type': EVENTS_MEDIA_TYPE,
      'Content-Length': String(body.length),
      'User-Agent': 'Berth-Webhook/1',
      'Berth-Webhook-Id': event.id,
      'Berth-Webhook-Attempt': String(attempt),
      [TIMESTAMP_HEADER]: timestamp,
      [SIGNATURE_HEADER]: signDelivery(secret, timestamp, body),
    };
    // TLS is loaded by the first https delivery, not by every worker at start.
    const send = url.protocol === 'https:' ? (await import('node:https')).request : httpRequest;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const finish = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(outcome);
      };
      const req = send(url, { method: 'POST', headers, lookup: this.destinations.lookup, agent: false }, (res) => {
        const status = res.statusCode ?? 0;
        // Read away and forgotten: the receiver's body is never stored or shown.
        res.resume();
        const outcome: Outcome =
          status >= 200 && status < 300
            ? { ok: true, status }
            : { ok: false, status, reason: status >= 300 && status < 400 ? `a redirect (${status}) is not followed` : `the receiver answered ${status}` };
        res.on('end', () => finish(outcome));
        res.on('error', () => finish(outcome));
        res.on('close', () => finish(outcome));
      });
      const timer = setTimeout(() => {
        req.destroy();
        finish({ ok: false, reason: `no answer within ${this.settings.timeoutMs} ms` });
      }, this.settings.timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) => {
        const refusedAtConnect = err.name === 'WebhookError';
        finish({ ok: false, reason: refusedAtConnect ? `refused: ${err.message}` : `cannot reach the receiver: ${err.code ?? err.message}` });
      });
      req.end(body);
    });
  }
}
