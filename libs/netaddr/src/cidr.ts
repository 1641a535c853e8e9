import { bitsOf, formatIp, Ip, IpFamily, parseIp } from './ip';

/** A prefix: its first address (host bits zero) and length. */
export interface Cidr {
  readonly family: IpFamily;
  readonly base: bigint;
  readonly prefix: number;
}

export interface IpInCidr {
  readonly ip: Ip;
  readonly cidr: Cidr;
}

function splitPrefix(text: string): [Ip, number] {
  const slash = text.indexOf('/');
  if (slash < 0) throw new TypeError(`not a CIDR (no prefix length): ${JSON.stringify(text)}`);
  const ip = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  const prefix = Number(lenText);
  if (!/^\d{1,3}$/.test(lenText) || prefix > bitsOf(ip.family)) {
    throw new TypeError(`bad prefix length in ${JSON.stringify(text)}`);
  }
  return [ip, prefix];
}

const hostMask = (family: IpFamily, prefix: number): bigint => (1n << BigInt(bitsOf(family) - prefix)) - 1n;

/** Parses "10.1.2.0/24". Host bits must be zero unless `loose`, in which case they are cleared. */
export function parseCidr(text: string, opts: { loose?: boolean } = {}): Cidr {
  const [ip, prefix] = splitPrefix(text);
  const mask = hostMask(ip.family, prefix);
  if ((ip.value & mask) !== 0n && !opts.loose) {
    throw new TypeError(`${text} has host bits set; did you mean ${formatCidr(cidrOf(ip, prefix))}?`);
  }
  return cidrOf(ip, prefix);
}

/** Parses "10.1.2.3/24" as an address together with the prefix it lives in. */
export function parseIpInCidr(text: string): IpInCidr {
  const [ip, prefix] = splitPrefix(text);
  return { ip, cidr: cidrOf(ip, prefix) };
}

export const cidrOf = (ip: Ip, prefix: number): Cidr => ({
  family: ip.family,
  base: ip.value & ~hostMask(ip.family, prefix),
  prefix,
});

export const formatCidr = (c: Cidr): string => `${formatIp({ family: c.family, value: c.base })}/${c.prefix}`;
export const cidrSize = (c: Cidr): bigint => hostMask(c.family, c.prefix) + 1n;
export const lastOf = (c: Cidr): bigint => c.base + hostMask(c.family, c.prefix);

export const contains = (c: Cidr, ip: Ip): boolean =>
  ip.family === c.family && ip.value >= c.base && ip.value <= lastOf(c);

export const containsCidr = (outer: Cidr, inner: Cidr): boolean =>
  outer.family === inner.family && outer.prefix <= inner.prefix && contains(outer, { family: inner.family, value: inner.base });

export const overlaps = (a: Cidr, b: Cidr): boolean =>
  a.family === b.family && a.base <= lastOf(b) && b.base <= lastOf(a);

export const sameCidr = (a: Cidr, b: Cidr): boolean =>
  a.family === b.family && a.base === b.base && a.prefix === b.prefix;

/** "10.1.2.3" with the prefix length of `c`: the form Docker wants for addresses. */
export const ipWithPrefix = (value: bigint, c: Cidr): string => `${formatIp({ family: c.family, value })}/${c.prefix}`;
