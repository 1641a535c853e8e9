import { randomBytes } from 'node:crypto';
import { parseIpInCidr } from '@weave/netaddr';

/**
 * MAC addresses. All are unicast (bit 0 of the first octet clear) and locally administered
 * (bit 1 set), so they can never clash with a vendor-assigned NIC address.
 */

/**
 * The bridge's MAC: a fixed first octet (0x7a, locally administered unicast) and 40 bits of the
 * network id. Every host derives the same MAC for a network, so the gateway address on the
 * bridges can later be an anycast gateway that a container keeps reaching after its ARP entry
 * was learned on another host. 0x7a keeps it out of Docker's 02:42 range used by endpoints.
 */
export function bridgeMac(networkId: string): string {
  if (!/^[0-9a-f]{10,}$/.test(networkId)) throw new TypeError(`not a Docker id: ${JSON.stringify(networkId)}`);
  return formatMac([0x7a, ...hexBytes(networkId.slice(0, 10))]);
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
const hexBytes = (hex: string): number[] => Array.from({ length: hex.length / 2 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
