import { runService } from '@weave/config';
import { IpString } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { z } from 'zod';
import { defaultAdvertiseAddress } from './address';
import { Sleeve } from '@weave/sleeve';
import { sleeveIdentity, startRouter } from './service';

const Env = z.object({
  WEAVE_ADVERTISE_ADDR: IpString.optional(),
  WEAVE_ROUTER_PORT: z.coerce.number().int().min(1).max(65535).default(6784),
  WEAVE_HEARTBEAT_MS: z.coerce.number().int().min(100).max(60_000).default(1000),
  WEAVE_PEER_TIMEOUT_MS: z.coerce.number().int().min(500).max(600_000).default(5000),
});

void runService('router', Env, async ({ env, log, nc }) => {
  const address = env.WEAVE_ADVERTISE_ADDR ?? (await defaultAdvertiseAddress());
  if (!address) throw new InvalidRequestError('no default route to take an address from: set WEAVE_ADVERTISE_ADDR to the address other hosts reach this one on');
  // Bound to the advertised address, so datagrams leave from the address peers expect them from.
  const sleeve = new Sleeve(sleeveIdentity(env.WEAVE_HOST, address, env.WEAVE_ROUTER_PORT));
  sleeve.start();
  const router = await startRouter({
    nc,
    host: env.WEAVE_HOST,
    log,
    address,
    port: env.WEAVE_ROUTER_PORT,
    heartbeatMs: env.WEAVE_HEARTBEAT_MS,
    peerTimeoutMs: env.WEAVE_PEER_TIMEOUT_MS,
    sleeve,
  });
  return router.stop;
});
