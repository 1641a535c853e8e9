import { Buckets, ResOf, ipamRpc } from '@weave/contracts';

type IpamStatus = ResOf<typeof ipamRpc, 'status'>;

/**
 * ipam's status without what changes on its own: a live host renews its record every few seconds
 * (renewedAt, and the lease left that follows from it). Tests that check "nothing changed" compare
 * what requests can change — pools, blocks, leases, and each host's epoch and state — and not the
 * heartbeat.
 */
export function ipamStateOfRecord(s: IpamStatus): unknown {
  return { ...s, hosts: s.hosts.map((h) => (h.state === 'live' ? { host: h.host, state: h.state, epoch: h.epoch } : { ...h, renewedAt: undefined })) };
}

/** KV buckets whose keys change by themselves (the hosts' renewals); ipamStateOfRecord covers what matters in them. */
export const selfChangingBuckets: readonly string[] = [Buckets.ipamHosts];
