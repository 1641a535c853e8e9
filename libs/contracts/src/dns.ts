import { z } from 'zod';
import { DockerId, HostName, IpString } from './primitives';

/**
 * Container names for weave DNS. plugin-api writes one record per endpoint of its host's
 * containers (bucket weave-dns, key dnsKey); netwire on every host reads them all and answers
 * its containers' queries with them (services/netwire/src/dns).
 */

/** The domain weave DNS answers for besides bare names: `web` and `web.weave.local` are the same. */
export const DNS_DOMAIN = 'weave.local';

/**
 * A name a container is known by: its container name or a network alias, as a DNS name would
 * carry it (labels of letters, digits, `-` and `_`, joined by dots), kept in lower case since DNS
 * compares names without case. Docker accepts container names with `.` and `_` too.
 */
export const DnsName = z
  .string()
  .max(253)
  .regex(/^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*$/, 'must be DNS labels (A-Z a-z 0-9 - _, at most 63 each) joined by dots')
  .transform((s) => s.toLowerCase());

export const DnsRecord = z.object({
  host: HostName,
  containerId: DockerId,
  endpointId: DockerId,
  /** The Docker network's name (the same on every host: the catalogue keeps the copies in line). */
  network: z.string().min(1).max(256),
  names: z.array(DnsName).min(1).max(64),
  addresses: z.array(IpString).min(1).max(2),
  /**
   * The host's ipam epoch (HostRecord) when the record was written, its addresses leased under it.
   * Once the host is reclaimed at a higher epoch those leases are gone and the record is stale
   * (any plugin-api may then remove it); the host, back and registered again, writes its records
   * under the new epoch, which no reclaim of the old one touches. Absent in records written
   * before records carried it.
   */
  epoch: z.number().int().positive().optional(),
});
export type DnsRecord = z.output<typeof DnsRecord>;

/** The record's key: a host lists and replaces its own by the prefix. */
export const dnsKey = (host: string, endpointId: string): string => `${host}.${endpointId}`;
export const dnsHostPrefix = (host: string): string => `${host}.`;
