import { InvalidRequestError } from '@weave/errors';
import { bitsOf, Cidr, cidrOf, containsCidr, formatCidr, IpFamily, parseCidr } from '@weave/netaddr';

/**
 * How pools, blocks and leases are named: in KV keys, which allow only [-/_=.a-zA-Z0-9] and use
 * `.` as the token separator (so `<poolKey>.*` lists one pool's children), and in the PoolID
 * Docker stores and sends back, possibly long after any of our processes restarted.
 */

/** A pool as Docker asked for it: `--subnet` and the optional `--ip-range` inside it. */
export interface PoolSpec {
  readonly pool: Cidr;
  readonly subPool: Cidr | null;
}

const hex = (v: bigint, family: IpFamily): string => v.toString(16).padStart(bitsOf(family) / 4, '0');

/** `v4-0a630000-24`: family, base in fixed-width hex, prefix length. */
export const poolKey = (pool: Cidr): string => `v${pool.family}-${hex(pool.base, pool.family)}-${pool.prefix}`;

/** `<poolKey>.<hex of the address>` */
export const leaseKey = (pool: Cidr, address: bigint): string => `${poolKey(pool)}.${hex(address, pool.family)}`;

/** `<poolKey>.<hex of the block's base>`; the block's length comes from the pool record. */
export const blockKey = (pool: Cidr, base: bigint): string => `${poolKey(pool)}.${hex(base, pool.family)}`;

const POOL_KEY = /^v([46])-([0-9a-f]+)-(\d{1,3})$/;

/** The pool a pool key names; null for keys this service did not write. */
export function cidrOfPoolKey(key: string): Cidr | null {
  const m = POOL_KEY.exec(key);
  if (!m) return null;
  const family = Number(m[1]) as IpFamily;
  const prefix = Number(m[3]);
  if (m[2]!.length !== bitsOf(family) / 4 || prefix > bitsOf(family)) return null;
  const pool = cidrOf({ family, value: BigInt(`0x${m[2]}`) }, prefix);
  return poolKey(pool) === key ? pool : null;
}

/** The address (lease key) or block base (block key) a child key of `pool` names; null if malformed. */
export function valueOfChildKey(pool: Cidr, key: string): bigint | null {
  const prefix = `${poolKey(pool)}.`;
  const tail = key.startsWith(prefix) ? key.slice(prefix.length) : '';
  if (tail.length !== bitsOf(pool.family) / 4 || !/^[0-9a-f]+$/.test(tail)) return null;
  return BigInt(`0x${tail}`);
}

const POOL_ID_PREFIX = 'weave:';

/** `weave:10.99.0.0/24`, or `weave:10.99.0.0/24:10.99.0.128/25` with an ip-range. */
export const poolIdOf = (s: PoolSpec): string =>
  `${POOL_ID_PREFIX}${formatCidr(s.pool)}${s.subPool ? `:${formatCidr(s.subPool)}` : ''}`;

// The pool part cannot contain `/`, so the first `/nn` ends it even for IPv6 (which has `:`s).
const POOL_ID = /^weave:([0-9a-fA-F.:]+\/\d{1,3})(?::([0-9a-fA-F.:]+\/\d{1,3}))?$/;

/**
 * The pool a PoolID names. Only the exact text we issue is accepted (canonical CIDRs, ip-range
 * inside the pool): anything else was not made by us, and is an InvalidRequestError, not a crash.
 */
export function parsePoolId(poolId: string): PoolSpec {
  const bad = (cause?: unknown) =>
    new InvalidRequestError(`${JSON.stringify(poolId)} is not a weave pool id (expected weave:<subnet>[:<ip-range>])`, cause === undefined ? undefined : { cause });
  const m = POOL_ID.exec(poolId);
  if (!m) throw bad();
  let spec: PoolSpec;
  try {
    spec = { pool: parseCidr(m[1]!), subPool: m[2] === undefined ? null : parseCidr(m[2]) };
  } catch (e) {
    throw bad(e);
  }
  if (spec.subPool && !containsCidr(spec.pool, spec.subPool)) throw bad();
  if (poolIdOf(spec) !== poolId) throw bad();
  return spec;
}
