import type { NetworkSpec } from '@weave/contracts';
import { parseCidr } from '@weave/netaddr';

/**
 * What identifies a network between hosts. Docker gives the same weave network a different id
 * on every host (the catalogue creates each host's copy through its own Docker), so the id on the
 * wire comes from what the copies share: the base address of the first IPv4 pool. It is unique
 * across the mesh because IPAM refuses overlapping pools, and it fits the sleeve header's 32-bit
 * network field without any allocation to coordinate.
 */
export function wireIdOf(spec: Pick<NetworkSpec, 'ipv4'>): number {
  const first = spec.ipv4[0];
  if (!first) throw new TypeError('a weave network has at least one IPv4 pool');
  const pool = parseCidr(first.pool);
  if (pool.family !== 4) throw new TypeError(`not an IPv4 pool: ${first.pool}`);
  return Number(pool.base);
}
