import { heldBy, LeaseRecord, PoolRecord } from './records';
import { isKept, keptExpired } from './sticky';

/** A lease as the mirror or the table has it: the address it holds, its record and revision. */
export interface LeaseEntry {
  address: bigint;
  value: LeaseRecord;
  revision: number;
}

export interface LeaseSweepInput {
  /** This host: only its own leases are ever candidates. */
  host: string;
  leases: readonly LeaseEntry[];
  /** Every address Docker has in the pool's network on this host (endpoints, gateway, aux). */
  keep: ReadonlySet<bigint>;
  /** Only leases made before this moment may go; see mayRelease. */
  olderThan: Date;
  /** Addresses kept for a MAC since before this moment have been kept long enough (see core/sticky.ts); absent: all are kept on. */
  keptBefore?: Date;
}

export interface LeaseSweep {
  release: LeaseEntry[];
  /** Leases Docker does not have but that are too young to tell from an allocation in flight. */
  spared: number;
}

export type LeaseVerdict = 'release' | 'spare' | 'keep';

/**
 * What reconciliation does with one lease, given Docker's view of this host.
 *
 * - Another host's lease, or a gateway or aux lease (they belong to the network on every host
 *   that has it, and the pool's teardown removes them): not ours to judge here.
 * - An address Docker has: kept.
 * - An address Docker does not have: a leak (a reply lost in a crash, a ReleaseAddress Docker
 *   sent while ipam was down) or an allocation in flight. Docker records an endpoint only after
 *   RequestAddress, then CreateEndpoint, have answered, so for a while after the lease is made it
 *   is missing from every listing. The caller's `olderThan` lies far enough before its listing
 *   began that anything made earlier and still in flight is impossible; younger leases are spared
 *   and judged again by a later pass. The lease's own time decides, not when we first saw it: a
 *   pass needs no memory of earlier passes, and a restarted plugin-api or ipam loses nothing.
 *   A time that does not parse counts as young: we cannot tell, so we keep it.
 * - An address kept for a MAC: Docker released it on purpose, and it is kept until `keptBefore`.
 */
export function leaseVerdict(l: LeaseEntry, i: Omit<LeaseSweepInput, 'leases'>): LeaseVerdict {
  if (l.value.host !== i.host || l.value.kind !== 'endpoint' || i.keep.has(l.address)) return 'keep';
  if (isKept(l.value)) return i.keptBefore && keptExpired(l.value, i.keptBefore) ? 'release' : 'keep';
  const leasedAt = Date.parse(l.value.time);
  return Number.isFinite(leasedAt) && leasedAt < i.olderThan.getTime() ? 'release' : 'spare';
}

/** The leases of one pool to release; pure, so every race case is a table test. */
export function planLeaseSweep(i: LeaseSweepInput): LeaseSweep {
  const out: LeaseSweep = { release: [], spared: 0 };
  for (const l of i.leases) {
    const v = leaseVerdict(l, i);
    if (v === 'release') out.release.push(l);
    else if (v === 'spare') out.spared++;
  }
  return out;
}

export interface PoolSweepInput {
  host: string;
  pools: ReadonlyArray<{ key: string; record: PoolRecord }>;
  /** The pool keys of every network on this host that uses our IPAM, as Docker has them. */
  docker: ReadonlySet<string>;
  olderThan: Date;
  /** When a reference without a time counts as taken: this process's start. */
  unknownAge: Date;
}

/**
 * Which of this host's pool references Docker has no network for: a ReleasePool Docker sent
 * while ipam was down (Docker removes the network regardless), or a RequestPool whose reply was
 * lost. Left alone, the subnet stays taken on this host for good ("already used by another
 * network on this host"). The same race as for leases: Docker stores a network only after
 * RequestPool, RequestAddress for its gateway and CreateNetwork have answered, so only
 * references taken before `olderThan` go. A reference without a time (`since`, written before
 * records had one) counts as taken at `unknownAge`, which errs towards keeping it.
 */
export function planPoolSweep(i: PoolSweepInput): { release: Array<{ key: string; record: PoolRecord }>; spared: number } {
  const out = { release: [] as Array<{ key: string; record: PoolRecord }>, spared: 0 };
  for (const p of i.pools) {
    const v = poolVerdict(p, i);
    if (v === 'release') out.release.push(p);
    else if (v === 'spare') out.spared++;
  }
  return out;
}

export function poolVerdict(p: { key: string; record: PoolRecord }, i: Omit<PoolSweepInput, 'pools'>): LeaseVerdict {
  if (heldBy(p.record, i.host) === 0 || i.docker.has(p.key)) return 'keep';
  const since = p.record.since?.[i.host];
  const takenAt = since === undefined ? i.unknownAge.getTime() : Date.parse(since);
  return takenAt < i.olderThan.getTime() ? 'release' : 'spare';
}
