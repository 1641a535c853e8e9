import { Cidr, cidrOf, formatCidr, Ip, parseCidr } from '@weave/netaddr';
import { InvalidRequestError } from '@weave/errors';

/**
 * How pools, blocks and leases are named: in KV keys (which allow only [-/_=.a-zA-Z0-9]) and in
 * the PoolID Docker stores and sends back, possibly long after any of our processes restarted.
 */
const hex = (v: bigint, family: 4 | 6) => v.toString(16).padStart(family === 4 ? 8 : 32, '0');

export const poolKey = (c: Cidr): string => `v${c.family}-${hex(c.base, c.family)}-${c.prefix}`;
export const leaseKey = (pool: Cidr, ip: Ip): string => `${poolKey(pool)}.${hex(ip.value, ip.family)}`;
export const blockKey = (pool: Cidr, block: Cidr): string => `${poolKey(pool)}.${hex(block.base, block.family)}-${block.prefix}`;

/** Parses the address out of a lease key. */
export function ipOfLeaseKey(key: string, family: 4 | 6): Ip {
  return { family, value: BigInt(`0x${key.slice(key.lastIndexOf('.') + 1)}`) };
}

/** Parses a block key back into its prefix. */
export function blockOfKey(key: string, family: 4 | 6): Cidr {
  const [base, prefix] = key.slice(key.lastIndexOf('.') + 1).split('-');
  return cidrOf({ family, value: BigInt(`0x${base}`) }, Number(prefix));
}

export function cidrOfPoolKey(key: string): Cidr {
  const m = /^v([46])-([0-9a-f]+)-(\d+)$/.exec(key);
  if (!m) throw new InvalidRequestError(`not a pool key: ${key}`);
  return cidrOf({ family: Number(m[1]) as 4 | 6, value: BigInt(`0x${m[2]}`) }, Number(m[3]));
}

const POOL_ID_PREFIX = 'weave:';
export const poolIdOf = (pool: Cidr): string => `${POOL_ID_PREFIX}${formatCidr(pool)}`;

/** The pool a PoolID names; a PoolID we never issued is an InvalidRequestError, not a crash. */
export function parsePoolId(poolId: string): Cidr {
  if (!poolId.startsWith(POOL_ID_PREFIX)) throw new InvalidRequestError(`${JSON.stringify(poolId)} is not a weave pool id`);
  try {
    return parseCidr(poolId.slice(POOL_ID_PREFIX.length));
  } catch (e) {
    throw new InvalidRequestError(`${JSON.stringify(poolId)} is not a weave pool id`, { cause: e });
  }
}
