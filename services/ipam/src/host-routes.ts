import { execFile } from 'node:child_process';
import { InternalError, UnavailableError } from '@weave/errors';
import { bitsOf, Cidr, isIp, parseCidr, parseIp } from '@weave/netaddr';
import { z } from 'zod';

/**
 * The prefixes this host already routes or has addresses in. A default subnet must avoid them:
 * a pool that overlaps eth0's subnet would make containers unreachable (and Docker would ask
 * again, forever, if we kept offering it).
 */
export interface HostRoutes {
  prefixes(): Promise<Cidr[]>;
}

/** Runs `ip <args>` and resolves to its stdout. */
export type RunIp = (args: readonly string[]) => Promise<string>;

const Routes = z.array(z.looseObject({ dst: z.string() }));
const Links = z.array(
  z.looseObject({ addr_info: z.array(z.looseObject({ local: z.string(), prefixlen: z.number().int() })).optional() }),
);

/** Prefixes of `ip -j route show table all`; default routes cover everything and say nothing. */
export function routePrefixes(json: string): Cidr[] {
  return parse(Routes, json, 'ip -j route').flatMap((r) => {
    if (r.dst === 'default') return [];
    const [ip, len] = r.dst.split('/');
    return prefixOf(ip!, len === undefined ? undefined : Number(len));
  });
}

/** The subnets of every address in `ip -j addr`. */
export function addressPrefixes(json: string): Cidr[] {
  return parse(Links, json, 'ip -j addr').flatMap((l) => (l.addr_info ?? []).flatMap((a) => prefixOf(a.local, a.prefixlen)));
}

function prefixOf(ip: string, len: number | undefined): Cidr[] {
  if (!isIp(ip)) return [];
  const family = parseIp(ip).family;
  const prefix = len ?? bitsOf(family);
  if (!Number.isInteger(prefix) || prefix <= 0 || prefix > bitsOf(family)) return [];
  return [parseCidr(`${ip}/${prefix}`, { loose: true })];
}

function parse<T>(schema: z.ZodType<T>, json: string, what: string): T {
  try {
    return schema.parse(JSON.parse(json.trim() || '[]'));
  } catch (e) {
    throw new InternalError(`cannot understand the output of ${what}`, { cause: e });
  }
}

/** The kernel's view, read with iproute2 (the image ships it; the service runs in the host's netns). */
export class KernelRoutes implements HostRoutes {
  constructor(private readonly run: RunIp = execIp) {}

  async prefixes(): Promise<Cidr[]> {
    const [routes, addrs] = await Promise.all([this.run(['-j', 'route', 'show', 'table', 'all']), this.run(['-j', 'addr'])]);
    return [...routePrefixes(routes), ...addressPrefixes(addrs)];
  }
}

const execIp: RunIp = (args) =>
  new Promise((resolve, reject) =>
    execFile('ip', args, { timeout: 5000, maxBuffer: 32 << 20 }, (err, stdout) =>
      err ? reject(new UnavailableError(`cannot read this host's routes: ip ${args.join(' ')} failed`, { cause: err })) : resolve(stdout),
    ),
  );

/** A fixed list, for tests: set `list` to change what the "host" routes. */
export class StaticRoutes implements HostRoutes {
  constructor(public list: Cidr[] = []) {}
  async prefixes(): Promise<Cidr[]> {
    return [...this.list];
  }
}
