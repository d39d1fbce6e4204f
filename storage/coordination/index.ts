// The coordination room: what several Berth processes agree on (locks, generations, rate counts, announcements), in this
// process alone, over IPC between cluster workers and their primary, or in Redis.
import type { Coordination } from './coordination.ts';

export { localCoordination, retryAfterSeconds, LocalGenerations, LocalRateCounter, type Coordination, type Generations, type RateCounter, type RateCount } from './coordination.ts';
export { LocalLock, type Lock } from './lock.ts';
export { LocalAnnouncements, type Announcements } from './announcements.ts';
export { clusterWorkerCoordination, ClusterLockArbiter, ClusterGenerationRelay, ClusterRateRelay, ClusterAnnouncementRelay } from './cluster.ts';

// ioredis is loaded only by a process configured for Redis: it costs memory in every process that would
// otherwise never touch it.
export type { RedisConfig } from './redis.ts';

export async function createRedisCoordination(config: import('./redis.ts').RedisConfig): Promise<Coordination> {
  const { redisCoordination, whenReady } = await import('./redis.ts');
  const coordination = redisCoordination(config);
  await whenReady(coordination.redis, 5000);
  return coordination;
}
