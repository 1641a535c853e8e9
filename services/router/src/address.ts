import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { SLEEVE_OVERHEAD } from '@weave/contracts';
import { z } from 'zod';

const Routes = z.array(z.looseObject({ dev: z.string().optional(), prefsrc: z.string().optional() }));
const Addrs = z.array(z.looseObject({ addr_info: z.array(z.looseObject({ family: z.string(), local: z.string() })) }));

const ip = (args: string[]): Promise<unknown> =>
  new Promise((resolve, reject) => execFile('ip', ['-j', ...args], (err, out) => (err ? reject(err) : resolve(JSON.parse(out || '[]')))));

/**
 * The address peers should reach this host on when WEAVE_ADVERTISE_ADDR is not set: the IPv4
 * address of the interface holding the default route (read from the routing table; nothing is
 * sent anywhere). Null when there is no default route.
 */
export async function defaultAdvertiseAddress(): Promise<string | null> {
  const route = Routes.parse(await ip(['-4', 'route', 'show', 'default']))[0];
  if (!route?.dev) return null;
  if (route.prefsrc) return route.prefsrc;
  const addrs = Addrs.parse(await ip(['-4', 'addr', 'show', 'dev', route.dev]));
  return addrs[0]?.addr_info.find((a) => a.family === 'inet')?.local ?? null;
}

// `ip -j route get` puts a route's own MTU (`ip route … mtu N`, or a learnt PMTU) in `metrics`.
const RouteGet = z.array(z.looseObject({ dev: z.string(), mtu: z.number().optional(), metrics: z.array(z.looseObject({ mtu: z.number().optional() })).optional() })).min(1);

/**
 * The MTU a frame to `address` can have inside the sleeve: the route's MTU (or its interface's)
 * less the encapsulation overhead (the plain sleeve's unless told: encryption adds to it). Read from the routing table; nothing is sent.
 */
export async function sleevePathMtu(address: string, overhead = SLEEVE_OVERHEAD): Promise<number> {
  const route = routeOf(await ip(['route', 'get', address]));
  const mtu = route.mtu ?? Number(await readFile(`/sys/class/net/${route.dev}/mtu`, 'utf8'));
  return mtu - overhead;
}

/** The device and, when the route has one of its own, the MTU of `ip -j route get`'s answer. */
export function routeOf(json: unknown): { dev: string; mtu: number | null } {
  const route = RouteGet.parse(json)[0]!;
  return { dev: route.dev, mtu: route.mtu ?? route.metrics?.find((m) => m.mtu !== undefined)?.mtu ?? null };
}
