import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { SLEEVE_OVERHEAD } from '@weave/contracts';
import { routeOf } from '@weave/kernel-cmd';
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

/**
 * The MTU a frame to `address` can have inside the sleeve: the route's MTU (or its interface's)
 * less the encapsulation overhead (the plain sleeve's unless told: encryption adds to it). Read from the routing table; nothing is sent.
 */
export async function sleevePathMtu(address: string, overhead = SLEEVE_OVERHEAD): Promise<number> {
  const route = routeOf(await ip(['route', 'get', address]));
  const mtu = route.mtu ?? Number(await readFile(`/sys/class/net/${route.dev}/mtu`, 'utf8'));
  return mtu - overhead;
}
