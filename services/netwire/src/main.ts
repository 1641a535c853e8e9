import { meshPasswordOf, runService } from '@weave/config';
import { sleeveOverhead } from '@weave/contracts';
import { rpcCallMetrics, serveMetrics, serviceRegistry } from '@weave/metrics';
import { NetwireEnv } from './env';
import { LinuxKernel } from './kernel-linux';
import { collectNetwireState } from './metrics';
import { startNetwire } from './service';
import { hostUpstreams } from './dns/host-upstreams';

void runService('netwire', NetwireEnv, async ({ env, log, nc }) => {
  const kernel = new LinuxKernel({ netns: env.WEAVE_NETNS ?? null, ipv4ConfDir: env.WEAVE_IPV4_CONF_DIR });
  const metrics = serviceRegistry('netwire', env.WEAVE_HOST);
  const rpcMetrics = rpcCallMetrics(metrics, 'netwire');
  // An encrypted mesh carries everything on the sleeve, with room for the AEAD on every datagram.
  const mtuOverhead = sleeveOverhead(meshPasswordOf(env) !== null);
  const dns = hostUpstreams(env, log);
  const running = await startNetwire({ nc, host: env.WEAVE_HOST, kernel, log, mtu: env.WEAVE_MTU ?? null, mtuOverhead, replicas: env.WEAVE_KV_REPLICAS, rpcMetrics, dns });
  collectNetwireState(metrics, running.netwire, kernel);
  const served = await serveMetrics(metrics, { port: env.WEAVE_NETWIRE_METRICS_PORT, log, variable: 'WEAVE_NETWIRE_METRICS_PORT' });
  return async () => {
    await served?.close();
    await running.stop();
  };
});
