import type { Versioned } from '@weave/bus';
import { DnsRecord, dnsHostPrefix, HostRecord } from '@weave/contracts';

/** A record of a reclaimed host to delete, only if the key is still at `revision`. */
export interface DnsRemoval {
  key: string;
  record: DnsRecord;
  revision: number;
  /** The epoch the host was reclaimed at, and by whom: for the log. */
  epoch: number;
  reclaimedBy: string;
}

export interface CleanupView {
  /** This host. */
  me: string;
  now: Date;
  /**
   * How long after a reclaim the hosts other than its reclaimer and the lost host itself also
   * remove its records: a fallback for when neither of those plugin-apis runs, late enough that
   * normally there is nothing left and the mesh does not send every deletion once per host.
   */
  othersAfterMs: number;
}

/**
 * The records whose addresses ipam took back: those of a host reclaimed at an epoch above the one
 * they were written under. Safe whatever `hosts` says and however stale it is, since a host only
 * ever writes under the epoch it is live at, and a reclaim sets one above it: a host that came
 * back writes under the reclaim's epoch, never below it, so its fresh records never match; a
 * fresher reclaim than `hosts` shows only leaves records for later. The deletion by revision
 * covers a record rewritten after it was read.
 */
export function planReclaimedRemovals(v: CleanupView, hosts: ReadonlyMap<string, HostRecord>, records: ReadonlyMap<string, Versioned<DnsRecord>>): DnsRemoval[] {
  const out: DnsRemoval[] = [];
  for (const [key, { value: record, revision }] of records) {
    const h = hosts.get(record.host);
    if (h?.state !== 'reclaimed' || !key.startsWith(dnsHostPrefix(record.host))) continue;
    // Records from before they carried an epoch were written under some epoch below any reclaim's.
    if ((record.epoch ?? 0) >= h.epoch || !ourTurn(v, record.host, h)) continue;
    out.push({ key, record, revision, epoch: h.epoch, reclaimedBy: h.reclaimedBy });
  }
  return out;
}

const ourTurn = (v: CleanupView, host: string, h: Extract<HostRecord, { state: 'reclaimed' }>): boolean =>
  v.me === h.reclaimedBy || v.me === host || v.now.getTime() - Date.parse(h.reclaimedAt) >= v.othersAfterMs;

/**
 * The reclaims `hosts` shows, as `host@epoch`: a new one is worth a pass at once (this host may
 * be its reclaimer, or the host reclaimed), while renewals, which change the bucket every few
 * seconds, are not.
 */
export function reclaimsIn(hosts: ReadonlyMap<string, HostRecord>): Set<string> {
  return new Set([...hosts].filter(([, r]) => r.state === 'reclaimed').map(([host, r]) => `${host}@${r.epoch}`));
}
