import { z } from 'zod';
import { IpWithPrefix, MacString } from './primitives';

/**
 * Addresses that stick to a container's own MAC. Asked for it (IpamDriver capability
 * RequiresMACAddress), Docker sends each endpoint's MAC with RequestAddress and CreateEndpoint.
 * It makes a MAC up afresh for every endpoint, on every start, unless the user gave the
 * container one (`--mac-address`, compose `mac_address`; observed on dockerd 20.10.24), and marks
 * a user's MAC in CreateEndpoint's Options with `com.docker.network.endpoint.macaddress` (base64).
 * Only such a MAC names the same container again: an address given to it is kept for it after
 * Docker releases it, so that its next start (`docker restart`, a restart policy, dockerd
 * restarting) gets the address back.
 *
 * The part of an ipam lease record (JetStream KV, bucket weave-ipam-leases) that says so. A kept
 * address stays leased, so no host can give it to anyone else until ipam lets it go: after
 * WEAVE_IPAM_KEEP_MS, or when a request names it (--ip, --aux-address, --gateway), or when an
 * allocation finds no other free address.
 */
export const StickyLease = z.object({
  /** The container's own MAC, lowercase. */
  mac: MacString,
  /** When Docker released the address and it was kept for the MAC; absent while an endpoint has it. */
  releasedAt: z.iso.datetime().optional(),
});
export type StickyLease = z.output<typeof StickyLease>;

/** CreateEndpoint with the user's MAC: the endpoint's address (CIDR notation, as Docker has it) sticks to it. */
export const StickToMacRequest = z.strictObject({ address: IpWithPrefix, mac: MacString });
/** `sticky` false, with why: no endpoint lease of this host there (an aux address, say), or nothing is kept on this host. */
export const StickToMacResult = z.strictObject({ sticky: z.boolean(), reason: z.string().nullable() });
