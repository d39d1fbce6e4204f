// A raw TCP client for attacker-style tests: it writes a request a few bytes at a time (or not at all),
// from any loopback source address, and records what the server answered and when it closed.
import { connect, type Socket } from 'node:net';

export interface SlowConnection {
  socket: Socket;
  /** Everything the server sent so far. */
  received(): string;
  /** Resolves with what the server sent once it closes the connection (or after we destroy it). */
  closed: Promise<string>;
  /** Writes unless the connection is gone; returns whether it wrote. */
  send(data: string | Buffer): boolean;
  /** Writes `data` every `everyMs` until the connection closes; returns a stop function. */
  trickle(data: string | Buffer, everyMs: number): () => void;
  /** The status line's code, once one arrived. */
  status(): number | undefined;
}

/** Connects from `localAddress` (127.0.0.2, 127.0.0.3 … are all loopback on Linux). */
export async function openSlow(port: number, localAddress = '127.0.0.1'): Promise<SlowConnection> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1'))));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const received = () => Buffer.concat(chunks).toString('latin1');
  const send = (data: string | Buffer) => {
    if (socket.destroyed || !socket.writable) return false;
    socket.write(data);
    return true;
  };
  return {
    socket,
    received,
    closed,
    send,
    trickle(data, everyMs) {
      const timer = setInterval(() => {
        if (!send(data)) clearInterval(timer);
      }, everyMs);
      socket.once('close', () => clearInterval(timer));
      return () => clearInterval(timer);
    },
    status() {
      const match = /^HTTP\/1\.1 (\d{3})/.exec(received());
      return match ? Number(match[1]) : undefined;
    },
  };
}

/** Resolves with how long the promise took, in milliseconds, with its value. */
export async function timed<T>(promise: Promise<T>): Promise<{ ms: number; value: T }> {
  const started = Date.now();
  const value = await promise;
  return { ms: Date.now() - started, value };
}
