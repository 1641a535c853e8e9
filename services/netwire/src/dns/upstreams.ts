import { isIPv4, isIPv6 } from 'node:net';

/**
 * Which resolvers weave DNS stands in for, and which it passes other names on to.
 *
 * Docker's embedded DNS (127.0.0.11 in every container on a user-defined network) answers the
 * names of containers on its own host and sends every other query, from inside the container,
 * to the resolvers Docker gave the container: the host's, without loopback ones, or Google's
 * when only loopback ones remain (libnetwork's FilterResolvDNS, 20.10 to 26). So a container's
 * query for a container on another host leaves it addressed to one of those, through the
 * network's gateway: netwire turns exactly those (and nothing a user chose with `--dns`) to
 * weave DNS on the gateway, which answers the mesh's names and sends the rest to the host's
 * resolvers, the ones the container would have reached.
 */
export interface Upstreams {
  /** Destinations whose port 53 is turned to weave DNS: what Docker hands containers. */
  intercepted: string[];
  /** Where names that are not the mesh's go: the host's resolvers, loopback included (netwire runs in the host's namespace). */
  forwardTo: string[];
}

/** Docker's fallback when the host has no resolver a container could reach. */
export const DOCKER_DEFAULT_RESOLVERS = ['8.8.8.8', '8.8.4.4'] as const;
/** A stub resolver uses the first three (glibc's MAXNS). */
const MAX_NAMESERVERS = 3;

export function upstreamsOf(resolvConf: string): Upstreams {
  const forwardTo = nameserversOf(resolvConf);
  const reachable = forwardTo.filter((ip) => isIPv4(ip) && !ip.startsWith('127.'));
  return { intercepted: reachable.length ? reachable : [...DOCKER_DEFAULT_RESOLVERS], forwardTo };
}

/** The `nameserver` lines' addresses, in order, without zone ids; anything else is ignored. */
export function nameserversOf(resolvConf: string): string[] {
  const out: string[] = [];
  for (const line of resolvConf.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const ip = m?.[1]?.replace(/%.*$/, '');
    if (ip && (isIPv4(ip) || isIPv6(ip)) && !out.includes(ip)) out.push(ip);
  }
  return out.slice(0, MAX_NAMESERVERS);
}
