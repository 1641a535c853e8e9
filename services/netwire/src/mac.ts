import { randomBytes } from 'node:crypto';
import { parseIpInCidr } from '@weave/netaddr';

/**
 * MAC addresses. All are unicast (bit 0 of the first octet clear) and locally administered
 * (bit 1 set), so they can never clash with a vendor-assigned NIC address.
 */

/**
 * The bridge's MAC, which is the network's gateway MAC: 7a:57 (locally administered unicast,
 * outside Docker's 02:42 endpoint range) and the network's 32-bit wire id. Every host derives the
 * same one, so the gateway is an anycast gateway: each host's bridge answers for it, and the
 * router keeps frames from it off the wire.
 */
export function bridgeMac(wireId: number): string {
  if (!Number.isInteger(wireId) || wireId < 0 || wireId > 0xffff_ffff) throw new TypeError(`not a wire id: ${wireId}`);
  return formatMac([0x7a, 0x57, wireId >>> 24, (wireId >>> 16) & 0xff, (wireId >>> 8) & 0xff, wireId & 0xff]);
}

/**
 * A container MAC when Docker gave none: 02:42 + the IPv4 address, as Docker's own bridge driver
 * does (unique wherever the address is, which the mesh-wide IPAM guarantees); random when the
 * endpoint has no IPv4 address.
 */
export function endpointMac(address: string | null, random: (n: number) => Uint8Array = randomBytes): string {
  if (address) {
    const { ip } = parseIpInCidr(address);
    if (ip.family === 4) return formatMac([0x02, 0x42, ...[24n, 16n, 8n, 0n].map((s) => Number((ip.value >> s) & 0xffn))]);
  }
  const b = Array.from(random(6));
  b[0] = (b[0]! & 0xfc) | 0x02;
  return formatMac(b);
}

export const normaliseMac = (mac: string): string => mac.toLowerCase();

export function isLocalUnicast(mac: string): boolean {
  const first = parseInt(mac.slice(0, 2), 16);
  return (first & 0x01) === 0 && (first & 0x02) === 0x02;
}

const formatMac = (bytes: number[]): string => bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
