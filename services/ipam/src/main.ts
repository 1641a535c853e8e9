import { runService } from '@weave/config';
import { hostLeaseConfig, IpamEnv, ipamConfig } from './env';
import { KernelRoutes } from './host-routes';
import { startIpam } from './service';

void runService('ipam', IpamEnv, async ({ env, log, nc }) => {
  const { stop } = await startIpam({
    nc,
    host: env.WEAVE_HOST,
    log,
    routes: new KernelRoutes(),
    config: ipamConfig(env),
    lease: hostLeaseConfig(env),
    replicas: env.WEAVE_KV_REPLICAS,
  });
  return stop;
});
