// The Coordination contract against each implementation: this process alone, two cluster workers (real
// forked processes) with this process as their primary, and Redis (a real redis-server) shared by two
// connections as by two replicas.
import { createRedisCoordination, localCoordination } from '../../storage/index.ts';
import { clusterMembers } from '../helpers/coordination-cluster.ts';
import { startRedis } from '../helpers/redis.ts';
import { describeCoordination } from './coordination-contract.ts';

describeCoordination('local (one process)', async () => {
  const local = localCoordination();
  return { members: [local, local], cleanup: () => local.close() };
});

describeCoordination('cluster workers (two forked workers, this process their primary)', async () => {
  const { members, stop } = await clusterMembers(2);
  return { members: [members[0]!, members[1]!], cleanup: stop };
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
