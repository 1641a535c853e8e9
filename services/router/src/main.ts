import { MeshPasswordEnv, meshPasswordOf, runService } from '@weave/config';
import { DEFAULT_VXLAN_PORT, IpString } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { METRICS_PORTS, MetricsPort, serveMetrics, serviceRegistry } from '@weave/metrics';
import { z } from 'zod';
import { defaultAdvertiseAddress } from './address';
import { startFastPath } from './fastpath';
import { collectRouterState } from './metrics';
import { Sleeve } from '@weave/sleeve';
import { sleeveIdentity, startRouter } from './service';

const Env = MeshPasswordEnv.extend({
  WEAVE_ADVERTISE_ADDR: IpString.optional(),
  WEAVE_ROUTER_PORT: z.coerce.number().int().min(1).max(65535).default(6784),
  WEAVE_HEARTBEAT_MS: z.coerce.number().int().min(100).max(60_000).default(1000),
  WEAVE_PEER_TIMEOUT_MS: z.coerce.number().int().min(500).max(600_000).default(5000),
  WEAVE_FASTPATH: z.enum(['on', 'off']).default('on'),
  WEAVE_VXLAN_PORT: z.coerce.number().int().min(1).max(65535).default(DEFAULT_VXLAN_PORT),
  WEAVE_PROBE_PORT: z.coerce.number().int().min(1).max(65535).default(6785),
  /** Prometheus metrics on 127.0.0.1:<port>/metrics; 0 or off: none. */
  WEAVE_ROUTER_METRICS_PORT: MetricsPort(METRICS_PORTS.router),
});

void runService('router', Env, async ({ env, log, nc }) => {
  const address = env.WEAVE_ADVERTISE_ADDR ?? (await defaultAdvertiseAddress());
  if (!address) throw new InvalidRequestError('no default route to take an address from: set WEAVE_ADVERTISE_ADDR to the address other hosts reach this one on');
  // Bound to the advertised address, so datagrams leave from the address peers expect them from.
  const password = meshPasswordOf(env);
  const sleeve = new Sleeve(sleeveIdentity(env.WEAVE_HOST, address, env.WEAVE_ROUTER_PORT, password));
  sleeve.start();
  const fast = await startFastPath({
    // The kernel's VXLAN is plaintext: an encrypted mesh keeps every peer on the sleeve.
    enabled: env.WEAVE_FASTPATH === 'on' && password === null,
    offBecause: password !== null ? 'encryption is on (WEAVE_PASSWORD): the kernel VXLAN would carry frames in clear, so every peer uses the encrypted sleeve' : undefined,
    host: env.WEAVE_HOST,
    address,
    vxlanPort: env.WEAVE_VXLAN_PORT,
    probePort: env.WEAVE_PROBE_PORT,
    log,
  });
  const router = await startRouter({
    nc,
    host: env.WEAVE_HOST,
    log,
    address,
    port: env.WEAVE_ROUTER_PORT,
    heartbeatMs: env.WEAVE_HEARTBEAT_MS,
    peerTimeoutMs: env.WEAVE_PEER_TIMEOUT_MS,
    sleeve,
    password,
    fastPath: fast.fastPath,
  });
  fast.onChange(() => void router.dataPath.sync());
  const metrics = serviceRegistry('router', env.WEAVE_HOST);
  collectRouterState(metrics, router);
  const served = await serveMetrics(metrics, { port: env.WEAVE_ROUTER_METRICS_PORT, log, variable: 'WEAVE_ROUTER_METRICS_PORT' });
  return async () => {
    await served?.close();
    await router.stop();
    await fast.stop();
  };
});
