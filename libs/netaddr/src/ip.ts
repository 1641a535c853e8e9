import { isIPv4, isIPv6 } from 'node:net';

/** An IP address as a number, with its family; arithmetic is done on the bigint. */
export type IpFamily = 4 | 6;
export interface Ip {
  readonly family: IpFamily;
  readonly value: bigint;
}

export const bitsOf = (family: IpFamily): number => (family === 4 ? 32 : 128);

export function parseIp(text: string): Ip {
  if (isIPv4(text)) {
    const value = text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
    return { family: 4, value };
  }
  if (isIPv6(text)) return { family: 6, value: parseIpv6(text) };
  throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
}

function parseIpv6(text: string): bigint {
  let groups: string[];
  const embeddedV4 = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (embeddedV4?.[1]) {
    const v4 = parseIp(embeddedV4[1]).value;
    text = text.slice(0, -embeddedV4[1].length) + `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  if (tail === undefined) {
    groups = head.split(':');
  } else {
    const h = head === '' ? [] : head.split(':');
    const t = tail === '' ? [] : tail.split(':');
    groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 0xffn)).join('.');
  }
  const groups = Array.from({ length: 8 }, (_, i) => (ip.value >> BigInt((7 - i) * 16)) & 0xffffn);
  // RFC 5952: compress the longest run (length >= 2) of zero groups.
  let best = { start: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0n) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0n) j++;
    if (j - i > best.len && j - i >= 2) best = { start: i, len: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.start < 0) return hex.join(':');
  return `${hex.slice(0, best.start).join(':')}::${hex.slice(best.start + best.len).join(':')}`;
}

export const ipWith = (ip: Ip, value: bigint): Ip => ({ family: ip.family, value });
export const isIp = (text: string): boolean => isIPv4(text) || isIPv6(text);
