// Shared state for several Berth processes or replicas, in Redis (ioredis): locks per upload session and
// per tag, and the generation counters that keep every process's caches honest. When Redis is away,
// reads go to storage (nothing cached is trusted) and writes that need a lock fail whole (Unavailable).
import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { StorageError } from '../errors.ts';
import { Watchers, type Announcements } from './announcements.ts';
import type { Coordination, Generations, RateCount, RateCounter } from './coordination.ts';
import type { Lock } from './lock.ts';

export interface RedisConfig {
  /** redis://[user:password@]host:port[/db], or rediss:// */
  url?: string;
  /** host:port,host:port of Sentinels; with sentinelName. */
  sentinels?: string;
  sentinelName?: string;
  /** host:port,host:port of Cluster nodes. */
  clusterNodes?: string;
  keyPrefix: string;
}

type Client = Redis | Cluster;

function hostPorts(list: string): Array<{ host: string; port: number }> {
  return list
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry) => {
      const colon = entry.lastIndexOf(':');
      return { host: entry.slice(0, colon), port: Number(entry.slice(colon + 1)) };
    });
}

export function connectRedis(config: RedisConfig): Client {
  // Fail fast while disconnected (no offline queue): a request must not hang on a missing Redis.
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  };
  if (config.clusterNodes) {
    return new Cluster(hostPorts(config.clusterNodes), { enableOfflineQueue: false, redisOptions: common });
  }
  if (config.sentinels) {
    return new Redis({ ...common, sentinels: hostPorts(config.sentinels), name: config.sentinelName ?? 'mymaster' });
  }
  return new Redis(config.url ?? 'redis://127.0.0.1:6379', common);
}

function unavailable(err: unknown): StorageError {
  return new StorageError(
    { kind: 'Unavailable', reason: (err as Error)?.message ?? String(err) },
    'shared state (Redis) is unavailable; try again shortly',
  );
}

// A missing counter (a new Redis, or one restarted empty) starts at a random value, so that a process
// that cached facts under the old counter cannot meet the same number again.
const CURRENT = `local v = redis.call('get', KEYS[1]) if not v then v = ARGV[1] redis.call('set', KEYS[1], v) end return v`;
const BUMP = `if redis.call('exists', KEYS[1]) == 0 then redis.call('set', KEYS[1], ARGV[1]) end return redis.call('incr', KEYS[1])`;

function randomStart(): string {
  return String(randomBytes(6).readUIntBE(0, 6));
}

interface GenerationCommands {
  berthGenerationCurrent(key: string, start: string): Promise<string>;
  berthGenerationBump(key: string, start: string): Promise<number>;
}

export class RedisGenerations implements Generations {
  private readonly commands: GenerationCommands;

  constructor(
    redis: Client,
    private readonly prefix: string,
  ) {
    // defineCommand sends the scripts once and then calls them by SHA: this is on the path of every pull.
    redis.defineCommand('berthGenerationCurrent', { numberOfKeys: 1, lua: CURRENT });
    redis.defineCommand('berthGenerationBump', { numberOfKeys: 1, lua: BUMP });
    this.commands = redis as unknown as GenerationCommands;
  }

  async current(name: string): Promise<number | undefined> {
    try {
      return Number(await this.commands.berthGenerationCurrent(`${this.prefix}gen:${name}`, randomStart()));
    } catch {
      return undefined;
    }
  }

  async bump(name: string): Promise<void> {
    try {
      await this.commands.berthGenerationBump(`${this.prefix}gen:${name}`, randomStart());
    } catch (err) {
      throw unavailable(err);
    }
  }
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/** A lease per key (SET NX PX), renewed while its holder works, released only by its holder. */
export class RedisLock implements Lock {
  constructor(
    private readonly redis: Client,
    private readonly prefix: string,
    private readonly leaseMs = 15_000,
    private readonly waitMs = 60_000,
  ) {}

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const lockKey = `${this.prefix}lock:${key}`;
    const token = randomBytes(16).toString('hex');
    const deadline = Date.now() + this.waitMs;
    for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
      let acquired: string | null;
      try {
        acquired = await this.redis.set(lockKey, token, 'PX', this.leaseMs, 'NX');
      } catch (err) {
        throw unavailable(err);
      }
      if (acquired === 'OK') break;
      if (Date.now() > deadline) {
        throw new StorageError({ kind: 'Busy', key }, 'the resource is busy; try again shortly');
      }
      await new Promise((r) => setTimeout(r, delay));
    }
    const renew = setInterval(() => {
      this.redis.eval(EXTEND, 1, lockKey, token, String(this.leaseMs)).catch(() => {});
    }, this.leaseMs / 3);
    try {
      return await fn();
    } finally {
      clearInterval(renew);
      await this.redis.eval(RELEASE, 1, lockKey, token).catch(() => {});
    }
  }
}

const HIT = `local c = redis.call('incrby', KEYS[1], ARGV[2]) if redis.call('pttl', KEYS[1]) < 0 then redis.call('pexpire', KEYS[1], ARGV[1]) end return {c, redis.call('pttl', KEYS[1])}`;

/** One counter per key and window in Redis, shared by every replica; it expires with its window. */
export class RedisRateCounter implements RateCounter {
  private readonly commands: { berthRateHit(key: string, windowMs: string, amount: string): Promise<[number, number]> };

  constructor(
    redis: Client,
    private readonly prefix: string,
  ) {
    redis.defineCommand('berthRateHit', { numberOfKeys: 1, lua: HIT });
    this.commands = redis as unknown as RedisRateCounter['commands'];
  }

  async hit(key: string, windowMs: number, amount = 1): Promise<RateCount | undefined> {
    try {
      const [count, ttl] = await this.commands.berthRateHit(`${this.prefix}rate:${key}`, String(windowMs), String(amount));
      return { count, resetMs: ttl > 0 ? ttl : windowMs };
    } catch {
      return undefined;
    }
  }
}

// A value and its change go together: a watcher that subscribed first and then reads never misses the
// change that made the value it reads. '+' carries a value, '-' a withdrawal.
const ANNOUNCE = `redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return redis.call('publish', ARGV[3], '+' .. ARGV[1])`;
const WITHDRAW = `redis.call('del', KEYS[1]) return redis.call('publish', ARGV[1], '-')`;

/**
 * Each value is a key with a time-to-live; each change is published on the key's channel. Watching takes
 * a second connection (a subscribed connection can do nothing else), opened at the first watch.
 */
export class RedisAnnouncements implements Announcements {
  private subscriber?: Promise<Client>;
  private readonly watchers = new Watchers();

  private readonly commands: {
    berthAnnounce(key: string, value: string, ttlMs: string, channel: string): Promise<number>;
    berthWithdraw(key: string, channel: string): Promise<number>;
  };

  constructor(
    private readonly redis: Client,
    private readonly prefix: string,
  ) {
    // Sent once, then called by SHA: a fill announces itself up to ten times a second.
    redis.defineCommand('berthAnnounce', { numberOfKeys: 1, lua: ANNOUNCE });
    redis.defineCommand('berthWithdraw', { numberOfKeys: 1, lua: WITHDRAW });
    this.commands = redis as unknown as RedisAnnouncements['commands'];
  }

  private channel(key: string): string {
    return `${this.prefix}announce:${key}`;
  }

  async announce(key: string, value: string, ttlMs: number): Promise<void> {
    const channel = this.channel(key);
    try {
      await this.commands.berthAnnounce(channel, value, String(ttlMs), channel);
    } catch (err) {
      throw unavailable(err);
    }
  }

  async withdraw(key: string): Promise<void> {
    const channel = this.channel(key);
    try {
      await this.commands.berthWithdraw(channel, channel);
    } catch (err) {
      throw unavailable(err);
    }
  }

  async watch(key: string, onChange: (value: string | undefined) => void): Promise<() => void> {
    const channel = this.channel(key);
    const first = this.watchers.add(channel, onChange);
    const stop = () => {
      if (this.watchers.remove(channel, onChange)) void this.subscriber?.then((s) => s.unsubscribe(channel)).catch(() => {});
    };
    try {
      const subscriber = await this.subscribed();
      if (first) await subscriber.subscribe(channel);
      onChange((await this.redis.get(channel)) ?? undefined);
    } catch (err) {
      stop();
      throw unavailable(err);
    }
    return stop;
  }

  private subscribed(): Promise<Client> {
    this.subscriber ??= (async () => {
      const subscriber = this.redis.duplicate();
      subscriber.on('error', () => {});
      subscriber.on('message', (channel: string, message: string) => {
        this.watchers.tell(channel, message.startsWith('+') ? message.slice(1) : undefined);
      });
      if (!(await whenReady(subscriber, 5000))) {
        subscriber.disconnect();
        this.subscriber = undefined;
        throw new Error('no connection for announcements');
      }
      return subscriber;
    })();
    return this.subscriber;
  }

  close(): void {
    void this.subscriber?.then((s) => s.disconnect()).catch(() => {});
  }
}

/**
 * Waits (bounded) until the connection is ready, so that a server does not start answering while its
 * first writes would still find Redis unconnected. A Redis that is down at start does not stop Berth:
 * pulls work without it, and writes answer 503 until it comes.
 */
export async function whenReady(redis: Client, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return true;
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}

export function redisCoordination(config: RedisConfig): Coordination & { redis: Client } {
  const redis = connectRedis(config);
  // Connection trouble is reported per request (503) and logged by the caller; never an unhandled event.
  redis.on('error', () => {});
  const announcements = new RedisAnnouncements(redis, config.keyPrefix);
  return {
    redis,
    announcements,
    lock: new RedisLock(redis, config.keyPrefix),
    generations: new RedisGenerations(redis, config.keyPrefix),
    counter: new RedisRateCounter(redis, config.keyPrefix),
    close: async () => {
      announcements.close();
      redis.disconnect();
    },
  };
}
