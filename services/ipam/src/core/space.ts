import { Cidr, cidrOf, cidrSize, contains, Ip, lastOf, overlaps } from '@weave/netaddr';

/**
 * Address arithmetic of a pool: which addresses may be handed out, how a range splits into the
 * blocks hosts claim, where a default subnet comes from. Pure functions only.
 */

/** The pool's network and (IPv4) broadcast addresses are never handed out, except in /31 and /32. */
export function isReserved(pool: Cidr, v: bigint): boolean {
  if (pool.family === 4 && pool.prefix >= 31) return false;
  return v === pool.base || (pool.family === 4 && v === lastOf(pool));
}

/** The first address a gateway gets when the user names none. */
export const defaultGateway = (pool: Cidr): Ip => ({ family: pool.family, value: pool.prefix >= 31 && pool.family === 4 ? pool.base : pool.base + 1n });

/** Splits `range` into aligned blocks of `blockSize` addresses (the whole range if smaller). */
export function blocksOf(range: Cidr, blockSize: number): Cidr[] {
  const bits = BigInt(blockSize).toString(2).length - 1;
  const hostBits = (range.family === 4 ? 32 : 128) - range.prefix;
  if (hostBits <= bits) return [range];
  const prefix = (range.family === 4 ? 32 : 128) - bits;
  // IPv6 ranges are huge: the first 4096 blocks are plenty for one network, and listing them all
  // would never end.
  const all = 1n << BigInt(hostBits - bits);
  const count = Number(all < 4096n ? all : 4096n);
  return Array.from({ length: count }, (_, i) => cidrOf({ family: range.family, value: range.base + BigInt(i) * BigInt(blockSize) }, prefix));
}

/** The lowest address of `block` that is neither reserved in `pool` nor in `used`. */
export function nextFree(block: Cidr, pool: Cidr, used: ReadonlySet<bigint>): bigint | null {
  const end = lastOf(block);
  for (let v = block.base; v <= end; v++) if (!isReserved(pool, v) && !used.has(v)) return v;
  return null;
}

/** How many addresses of `range` can be handed out at all. */
export function capacity(range: Cidr, pool: Cidr): bigint {
  let n = cidrSize(range);
  for (const v of [pool.base, lastOf(pool)]) if (contains(range, { family: range.family, value: v }) && isReserved(pool, v)) n--;
  return n;
}

/** The lowest /prefix of `range` that overlaps nothing in `taken`. */
export function chooseSubnet(range: Cidr, prefix: number, taken: readonly Cidr[]): Cidr | null {
  if (prefix < range.prefix) return null;
  const step = 1n << BigInt((range.family === 4 ? 32 : 128) - prefix);
  for (let base = range.base; base <= lastOf(range); base += step) {
    const candidate = cidrOf({ family: range.family, value: base }, prefix);
    const clash = taken.find((t) => overlaps(t, candidate));
    if (!clash) return candidate;
    // Jump to the subnet holding the clash's last address (the loop steps past it), instead of
    // walking a large clash subnet by subnet.
    base = range.base + ((lastOf(clash) - range.base) / step) * step;
  }
  return null;
}
