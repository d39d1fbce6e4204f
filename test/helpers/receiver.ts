// A real webhook receiver for the events tests: Node http on 127.0.0.1 that records each delivery and
// checks its signature as a receiver should (verifyDelivery over the raw body), answers as the test says,
// and can go down and come back on the same port.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifyDelivery } from '../../events/index.ts';

export interface Delivery {
  headers: IncomingMessage['headers'];
  body: Buffer;
  json: any;
  /** Whether the signature holds for the receiver's secret (set with `secret`). */
  verified: boolean;
}

export interface Receiver {
  url: string;
  port: number;
  deliveries: Delivery[];
  /** The endpoint's secret, for checking signatures (known once the endpoint is added). */
  secret?: string;
  /** How to answer; 204 by default. */
  answer: (res: ServerResponse) => void;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  let server: Server | undefined;
  const receiver: Receiver = {
    url: '',
    port: 0,
    deliveries: [],
    answer: (res) => {
      res.statusCode = 204;
      res.end();
    },
    async up() {
      server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          const headers = { timestamp: req.headers[TIMESTAMP_HEADER.toLowerCase()] as string, signature: req.headers[SIGNATURE_HEADER.toLowerCase()] as string };
          let json: unknown;
          try {
            json = JSON.parse(body.toString());
          } catch {
            json = undefined;
          }
          receiver.deliveries.push({ headers: req.headers, body, json, verified: receiver.secret !== undefined && verifyDelivery(receiver.secret, headers, body) });
          receiver.answer(res);
        });
      });
      await new Promise<void>((resolve) => server!.listen(receiver.port, '127.0.0.1', () => resolve()));
      receiver.port = (server.address() as AddressInfo).port;
      receiver.url = `http://127.0.0.1:${receiver.port}/hook`;
    },
    async down() {
      const closing = server;
      server = undefined;
      if (!closing) return;
      await new Promise<void>((resolve) => {
        closing.close(() => resolve());
        closing.closeAllConnections();
      });
    },
    close() {
      return receiver.down();
    },
  };
  await receiver.up();
  return receiver;
}
