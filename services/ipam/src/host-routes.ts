import { execFile } from 'node:child_process';
import { Cidr, parseCidr } from '@weave/netaddr';
import { z } from 'zod';

/** The prefixes this host already routes; a default subnet must not collide with them. */
export interface HostRoutes {
  prefixes(): Promise<Cidr[]>;
}

const Routes = z.array(z.looseObject({ dst: z.string(), type: z.string().optional() }));

/** Reads the kernel's routes (all tables) with iproute2. Default routes are not a collision. */
export class KernelRoutes implements HostRoutes {
  async prefixes(): Promise<Cidr[]> {
    const out = await new Promise<string>((resolve, reject) =>
      execFile('ip', ['-j', '-4', 'route', 'show', 'table', 'all'], (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    return Routes.parse(JSON.parse(out || '[]')).flatMap((r) => {
      if (r.dst === 'default' || r.type === 'broadcast' || r.type === 'multicast') return [];
      try {
        return [parseCidr(r.dst.includes('/') ? r.dst : `${r.dst}/32`, { loose: true })];
      } catch {
        return [];
      }
    });
  }
}
