import { z } from 'zod';
import { HostName, IpString } from './primitives';

/**
 * The records of ipam's hosts bucket (Buckets.ipamHosts), one per host, keyed by its name. ipam
 * is their only writer (services/ipam/src/core/hosts.ts decides every change); they are here
 * because plugin-api reads them too: a host reclaimed at an epoch has lost what it held under
 * the epochs before (its addresses, hence its containers' names in DNS).
 */
export const HeldPool = z.object({ poolId: z.string(), gateway: IpString.nullable() });
export type HeldPool = z.output<typeof HeldPool>;
export const HeldAddress = z.object({ poolId: z.string(), address: IpString });
export type HeldAddress = z.output<typeof HeldAddress>;

const Live = z.object({
  state: z.literal('live'),
  epoch: z.number().int().positive(),
  renewedAt: z.iso.datetime(),
});
const Reclaimed = z.object({
  state: z.literal('reclaimed'),
  /** One more than the epoch it had while live: keys of older epochs are the reclaimer's to remove. */
  epoch: z.number().int().positive(),
  /** The host's last renewal, kept for status. */
  renewedAt: z.iso.datetime(),
  reclaimedBy: HostName,
  reclaimedAt: z.iso.datetime(),
  /** Set by the reclaimer once it removed the host's keys: only then may the host register again. */
  done: z.boolean(),
  /**
   * The pools whose reference the reclaimer dropped, with their gateway then: the host joins them
   * again when it comes back, and leases the gateway again if the pool was torn down meanwhile
   * (its Docker networks still use it).
   */
  pools: z.array(HeldPool),
  /**
   * The endpoint addresses the reclaimer released, written when done. The host's containers that
   * still run use them: coming back, it leases again those nobody took meanwhile.
   */
  released: z.array(HeldAddress).optional(),
});
export const HostRecord = z.discriminatedUnion('state', [Live, Reclaimed]);
export type HostRecord = z.output<typeof HostRecord>;
export type ReclaimedRecord = z.output<typeof Reclaimed>;
