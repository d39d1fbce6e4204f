// The Coordination contract against each implementation: this process alone, and Redis (a real
// redis-server) shared by two connections as by two replicas.
import { createRedisCoordination, localCoordination } from '../../storage/index.ts';
import { startRedis } from '../helpers/redis.ts';
import { describeCoordination } from './coordination-contract.ts';

describeCoordination('local (one process)', async () => {
  const local = localCoordination();
  return { members: [local, local], cleanup: () => local.close() };
});

describeCoordination('Redis (two connections, as two replicas)', async () => {
  const redis = await startRedis();
  const config = { url: redis.url, keyPrefix: 'contract:' };
  const members = [await createRedisCoordination(config), await createRedisCoordination(config)] as const;
  return {
    members: [...members],
    cleanup: async () => {
      await Promise.all(members.map((m) => m.close()));
      await redis.stop();
    },
  };
});
