import { bitsOf, Cidr, cidrOf, cidrSize, contains, formatCidr, formatIp, Ip, lastOf, overlaps, sameCidr } from '@weave/netaddr';

/**
 * Address arithmetic of a pool: which addresses may be handed out, how a range splits into the
 * blocks hosts claim, where a default subnet comes from. Pure functions only.
 */

/** The pool's network and (IPv4) broadcast addresses; /31 and /32 have neither (RFC 3021). */
export function isReserved(pool: Cidr, v: bigint): boolean {
  if (pool.family === 4 && pool.prefix >= 31) return false;
  return v === pool.base || (pool.family === 4 && v === lastOf(pool));
}

/** Why `ip` cannot be given out in `pool` on request (--ip, --gateway, --aux-address), or null. */
export function staticProblem(pool: Cidr, ip: Ip): string | null {
  const what = `address ${formatIp(ip)}`;
  if (!contains(pool, ip)) return `${what} is not in pool ${formatCidr(pool)}`;
  if (!isReserved(pool, ip.value)) return null;
  return `${what} is the ${ip.value === pool.base ? 'network' : 'broadcast'} address of ${formatCidr(pool)}`;
}

/** The gateway a pool gets when the user names none: its first usable address. */
export const firstUsable = (pool: Cidr): bigint => (isReserved(pool, pool.base) ? pool.base + 1n : pool.base);

/** Length of the prefix of one block: `blockSize` addresses, or the whole range if smaller. */
export const blockPrefixOf = (range: Cidr, blockSize: number): number =>
  Math.max(range.prefix, bitsOf(range.family) - Math.log2(blockSize));

/**
 * The aligned blocks of `range`, lowest first. A generator: an IPv6 /64 has 2^58 of them, and
 * callers stop at the first one that suits them.
 */
export function* blocksOf(range: Cidr, blockSize: number): Generator<Cidr> {
  const prefix = blockPrefixOf(range, blockSize);
  const step = 1n << BigInt(bitsOf(range.family) - prefix);
  for (let base = range.base; base <= lastOf(range); base += step) yield cidrOf({ family: range.family, value: base }, prefix);
}

/** The block of `range` that holds address `v`. */
export const blockOf = (range: Cidr, blockSize: number, v: bigint): Cidr =>
  cidrOf({ family: range.family, value: v }, blockPrefixOf(range, blockSize));

/** The lowest address of `block` that is neither reserved in `pool` nor in `used`. */
export function nextFree(block: Cidr, pool: Cidr, used: ReadonlySet<bigint>): bigint | null {
  const end = lastOf(block);
  for (let v = block.base; v <= end; v++) if (!isReserved(pool, v) && !used.has(v)) return v;
  return null;
}

/** How many addresses of `range` can be handed out at all. */
export function capacity(range: Cidr, pool: Cidr): bigint {
  let n = cidrSize(range);
  for (const v of new Set([pool.base, lastOf(pool)])) if (isReserved(pool, v) && contains(range, { family: range.family, value: v })) n--;
  return n;
}

/** `10.99.0.0/24`, or `10.99.0.8/29 (ip-range of pool 10.99.0.0/24)`: the range in user terms. */
export const describeRange = (range: Cidr, pool: Cidr): string =>
  sameCidr(range, pool) ? formatCidr(pool) : `${formatCidr(range)} (ip-range of pool ${formatCidr(pool)})`;

/**
 * The lowest /prefix of `range` that overlaps nothing in `taken` (pools and host routes), or
 * null. A large clash (a /14 route) is skipped in one jump rather than /24 by /24.
 */
export function chooseSubnet(range: Cidr, prefix: number, taken: readonly Cidr[]): Cidr | null {
  if (prefix < range.prefix || prefix > bitsOf(range.family)) return null;
  const step = 1n << BigInt(bitsOf(range.family) - prefix);
  for (let base = range.base; base <= lastOf(range); base += step) {
    const candidate = cidrOf({ family: range.family, value: base }, prefix);
    const clash = taken.find((t) => overlaps(t, candidate));
    if (!clash) return candidate;
    // Continue from the candidate holding the clash's last address; the loop then steps past it.
    if (lastOf(clash) > base) base = range.base + ((lastOf(clash) - range.base) / step) * step;
  }
  return null;
}
