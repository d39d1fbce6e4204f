// Announcements: short-lived shared values whose every change reaches the processes watching them, so
// that one process can follow how far a job running in another has come (a mirror's blob fill streamed
// by a replica that did not start it). A value lives until withdrawn or until its time-to-live passes
// without it being announced again (its announcer died). In this process alone, they are a map.
import { EventEmitter } from 'node:events';

export interface Announcements {
  /** Sets `key` to `value` for `ttlMs` (unless announced again) and tells every watcher. */
  announce(key: string, value: string, ttlMs: number): Promise<void>;
  /** Removes `key` and tells every watcher (they hear undefined). */
  withdraw(key: string): Promise<void>;
  /**
   * Calls `onChange` with the current value of `key` (undefined: none), then with each later change, until
   * the returned function is called. Changes arrive in the order they were announced; a watcher may hear
   * one value twice.
   */
  watch(key: string, onChange: (value: string | undefined) => void): Promise<() => void>;
}

/** Keys one process announces or watches at once; past it, announce and watch refuse (a leak, not load). */
export const MAX_ANNOUNCED_KEYS = 10_000;

export class AnnouncementLimitError extends Error {
  constructor() {
    super(`more than ${MAX_ANNOUNCED_KEYS} announcements at once`);
    this.name = 'AnnouncementLimitError';
  }
}

type Listener = (value: string | undefined) => void;

/** The listeners of one process, per key watched: what a shared implementation tells each change it hears. */
export class Watchers {
  private readonly byKey = new Map<string, Set<Listener>>();

  /** Adds a listener; true when it is the key's first (the key is to be subscribed to). */
  add(key: string, listener: Listener): boolean {
    const listeners = this.byKey.get(key);
    if (listeners) {
      listeners.add(listener);
      return false;
    }
    if (this.byKey.size >= MAX_ANNOUNCED_KEYS) throw new AnnouncementLimitError();
    this.byKey.set(key, new Set([listener]));
    return true;
  }

  /** Removes a listener; true when it was the key's last (the key is to be unsubscribed from). */
  remove(key: string, listener: Listener): boolean {
    const listeners = this.byKey.get(key);
    if (!listeners?.delete(listener) || listeners.size > 0) return false;
    this.byKey.delete(key);
    return true;
  }

  tell(key: string, value: string | undefined): void {
    for (const listener of this.byKey.get(key) ?? []) listener(value);
  }
}

/**
 * Values with their expiry, and their watchers: what one process holds alone (local coordination), and
 * what the primary of cluster workers holds for all of them.
 */
export class AnnouncementBoard {
  private readonly values = new Map<string, { value: string; timer: NodeJS.Timeout }>();
  private readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
  }

  get(key: string): string | undefined {
    return this.values.get(key)?.value;
  }

  set(key: string, value: string, ttlMs: number): void {
    const previous = this.values.get(key);
    if (!previous && this.values.size >= MAX_ANNOUNCED_KEYS) throw new AnnouncementLimitError();
    clearTimeout(previous?.timer);
    const timer = setTimeout(() => this.delete(key), ttlMs);
    timer.unref();
    this.values.set(key, { value, timer });
    this.events.emit(key, value);
  }

  delete(key: string): void {
    const previous = this.values.get(key);
    if (!previous) return;
    clearTimeout(previous.timer);
    this.values.delete(key);
    this.events.emit(key, undefined);
  }

  on(key: string, listener: (value: string | undefined) => void): () => void {
    if (this.events.listenerCount(key) === 0 && this.events.eventNames().length >= MAX_ANNOUNCED_KEYS) throw new AnnouncementLimitError();
    this.events.on(key, listener);
    return () => this.events.off(key, listener);
  }
}

export class LocalAnnouncements implements Announcements {
  private readonly board = new AnnouncementBoard();

  async announce(key: string, value: string, ttlMs: number): Promise<void> {
    this.board.set(key, value, ttlMs);
  }

  async withdraw(key: string): Promise<void> {
    this.board.delete(key);
  }

  async watch(key: string, onChange: (value: string | undefined) => void): Promise<() => void> {
    const stop = this.board.on(key, onChange);
    onChange(this.board.get(key));
    return stop;
  }
}
