import { runService } from '@weave/config';
import { CidrString } from '@weave/contracts';
import { parseCidr } from '@weave/netaddr';
import { z } from 'zod';
import { KernelRoutes } from './host-routes';
import { startIpam } from './service';

const Env = z.object({
  WEAVE_IPAM_RANGE: CidrString.default('10.32.0.0/12'),
  WEAVE_IPAM_DEFAULT_PREFIX: z.coerce.number().int().min(8).max(30).default(24),
  WEAVE_IPAM_BLOCK_SIZE: z.coerce.number().int().min(1).max(65536).refine((n) => (n & (n - 1)) === 0, 'must be a power of two').default(64),
  WEAVE_KV_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
});

void runService('ipam', Env, async ({ env, log, nc }) => {
  const { stop } = await startIpam({
    nc,
    host: env.WEAVE_HOST,
    log,
    routes: new KernelRoutes(),
    defaultRange: parseCidr(env.WEAVE_IPAM_RANGE),
    defaultPrefix: env.WEAVE_IPAM_DEFAULT_PREFIX,
    blockSize: env.WEAVE_IPAM_BLOCK_SIZE,
    replicas: env.WEAVE_KV_REPLICAS,
  });
  return stop;
});
