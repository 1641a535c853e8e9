import { z } from 'zod';
import { isIp, parseCidr, parseIpInCidr } from '@weave/netaddr';

/** Shared field schemas, so every payload validates addresses and ids the same way. */
export const IpString = z.string().refine(isIp, { message: 'must be an IP address' });
export const CidrString = z.string().refine((s) => ok(() => parseCidr(s)), { message: 'must be a CIDR prefix like 10.1.0.0/24 (host bits zero)' });
export const IpWithPrefix = z.string().refine((s) => ok(() => parseIpInCidr(s)), { message: 'must be an address with prefix length like 10.1.0.1/24' });
export const DockerId = z.string().regex(/^[0-9a-f]{64}$/, 'must be a 64-character hex id');
export const MacString = z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'must be a MAC address like 02:42:0a:00:00:02');
/** Host names appear as NATS subject tokens, so they are restricted to token-safe characters. */
export const HostName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ -');
export const Mtu = z.number().int().min(576).max(65535);
/** A weave network's id on the wire (the sleeve header's network field): the same on every host. */
export const WireId = z.number().int().min(0).max(0xffff_ffff);

function ok(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}
