import { runService } from '@weave/config';
import { rpcCallMetrics, serveMetrics, serviceRegistry } from '@weave/metrics';
import { hostLeaseConfig, IpamEnv, ipamConfig } from './env';
import { KernelRoutes } from './host-routes';
import { instrumentStore } from './metrics';
import { startIpam } from './service';
import { openIpamStore } from './store';

void runService('ipam', IpamEnv, async ({ env, log, nc }) => {
  const metrics = serviceRegistry('ipam', env.WEAVE_HOST);
  const { stop } = await startIpam({
    nc,
    host: env.WEAVE_HOST,
    log,
    routes: new KernelRoutes(),
    config: ipamConfig(env),
    lease: hostLeaseConfig(env),
    replicas: env.WEAVE_KV_REPLICAS,
    store: instrumentStore(await openIpamStore(nc, env.WEAVE_KV_REPLICAS, log), metrics),
    rpcMetrics: rpcCallMetrics(metrics, 'ipam'),
  });
  const served = await serveMetrics(metrics, { port: env.WEAVE_IPAM_METRICS_PORT, log, variable: 'WEAVE_IPAM_METRICS_PORT' });
  return async () => {
    await served?.close();
    await stop();
  };
});
