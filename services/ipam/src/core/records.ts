import type { Mutation } from '@weave/bus';
import { AddressKind, CidrString, HostName, IpString, StickyLease } from '@weave/contracts';
import { ConflictError, NotFoundError } from '@weave/errors';
import { formatCidr } from '@weave/netaddr';
import { z } from 'zod';
import type { HeldVerdict } from './docker-users';
import { PoolSpec } from './keys';

/**
 * The three kinds of KV record, and the pure decisions that change a pool record. The store
 * applies each decision by compare-and-set and re-runs it on a fresh read if someone wrote in
 * between, so these functions must not look at anything but their arguments.
 */
export const PoolRecord = z.object({
  poolId: z.string(),
  pool: CidrString,
  subPool: CidrString.nullable(),
  v6: z.boolean(),
  /** The pool's gateway, the same on every host: the first host to ask chose it. */
  gateway: IpString.nullable(),
  /** Addresses per block, fixed when the pool is created so every host splits the range alike. */
  blockSize: z.number().int().positive(),
  /**
   * This incarnation of the pool. Blocks and leases carry it, so tearing down a released pool
   * never deletes keys of a new pool of the same subnet created meanwhile by another host.
   */
  gen: z.string().min(1),
  /** How many networks on each host use the pool. No holder left: the pool is being torn down. */
  holders: z.record(HostName, z.number().int().positive()),
  /**
   * When each holder last took a reference: reconciliation against Docker spares a reference
   * younger than its grace (a network being created). Absent in records written before it existed.
   */
  since: z.record(HostName, z.iso.datetime()).optional(),
});
export type PoolRecord = z.output<typeof PoolRecord>;

export const BlockRecord = z.object({ owner: HostName, epoch: z.number().int().positive(), claimedAt: z.iso.datetime(), gen: z.string() });
export type BlockRecord = z.output<typeof BlockRecord>;

export const LeaseRecord = z.object({
  host: HostName,
  kind: AddressKind,
  owner: z.string().optional(),
  time: z.iso.datetime(),
  gen: z.string(),
  /** The host's epoch when it leased (see core/hosts.ts); absent in leases written before epochs: the first. */
  epoch: z.number().int().positive().optional(),
  /** An endpoint's address that sticks to the container's own MAC, and whether it is kept for it (see core/sticky.ts). */
  sticky: StickyLease.optional(),
});
export type LeaseRecord = z.output<typeof LeaseRecord>;
export type LeaseKind = LeaseRecord['kind'];

/**
 * Gateway and aux addresses belong to the network, which exists on every host that holds the
 * pool: a second host asking for the same one gets it too, and one host's release keeps it
 * while other hosts still hold the pool. Endpoint addresses belong to one host.
 */
export const isNetworkWide = (kind: LeaseKind): boolean => kind !== 'endpoint';

export const holderTotal = (r: PoolRecord): number => Object.values(r.holders).reduce((a, b) => a + b, 0);
export const heldBy = (r: PoolRecord, host: string): number => r.holders[host] ?? 0;
export const heldByOthers = (r: PoolRecord, host: string): boolean => Object.keys(r.holders).some((h) => h !== host);

/** `at`: when the host took the reference it now adds; without it, `since` is left as it is. */
function withHolder(r: PoolRecord, host: string, count: number, at?: string): PoolRecord {
  const holders = { ...r.holders };
  const since = { ...r.since };
  if (count > 0) holders[host] = count;
  else delete holders[host];
  if (count === 0) delete since[host];
  else if (at !== undefined) since[host] = at;
  const { since: _old, ...rest } = r;
  return { ...rest, holders, ...(Object.keys(since).length > 0 ? { since } : {}) };
}

export interface NewPool {
  spec: PoolSpec;
  poolId: string;
  host: string;
  blockSize: number;
  gen: string;
  /** When the reference is taken (ISO time). */
  at?: string;
}

export const newPoolRecord = (n: NewPool): PoolRecord => ({
  poolId: n.poolId,
  pool: formatCidr(n.spec.pool),
  subPool: n.spec.subPool && formatCidr(n.spec.subPool),
  v6: n.spec.pool.family === 6,
  gateway: null,
  blockSize: n.blockSize,
  gen: n.gen,
  holders: { [n.host]: 1 },
  ...(n.at === undefined ? {} : { since: { [n.host]: n.at } }),
});

export type JoinResult =
  | { kind: 'created' | 'joined'; record: PoolRecord }
  /** This host's leftover reference, taken over by the request (see heldVerdict). */
  | { kind: 'adopted'; record: PoolRecord }
  /** This host's leftover reference of another ip-range: the caller releases it and asks again. */
  | { kind: 'stale'; record: PoolRecord }
  | { kind: 'draining'; record: PoolRecord };
type Decision<R> = { change: Mutation<PoolRecord>; result: R };

/**
 * Joining `host` to the pool: creates the record, or adds the host as a holder. Refuses what
 * Docker's own IPAM refuses in one address space (the same subnet twice on one host), and a
 * different ip-range than the other hosts use (they would disagree on which addresses are free).
 *
 * A host holds a pool once at most. When it holds it already, `whenHeld` (heldVerdict, from
 * Docker's list of this host's networks) tells a second network, refused, from the create that
 * left the reference asked again, which takes it over: same reference, its time renewed so that
 * reconciliation spares it while the network is being created. Without `whenHeld`: refused.
 */
export function decideJoin(cur: PoolRecord | null, n: NewPool, whenHeld?: (cur: PoolRecord) => HeldVerdict): Decision<JoinResult> {
  if (!cur) {
    const record = newPoolRecord(n);
    return { change: { put: record }, result: { kind: 'created', record } };
  }
  if (holderTotal(cur) === 0) return { change: { keep: true }, result: { kind: 'draining', record: cur } };
  const pool = formatCidr(n.spec.pool);
  if (heldBy(cur, n.host) > 0) {
    const v: HeldVerdict = whenHeld?.(cur) ?? { kind: 'refuse', reason: `subnet ${pool} is already used by another network on this host (${n.host})` };
    if (v.kind === 'refuse') throw new ConflictError(v.reason);
    if (v.kind === 'replace') return { change: { keep: true }, result: { kind: 'stale', record: cur } };
    const record = withHolder(cur, n.host, heldBy(cur, n.host), n.at);
    return { change: { put: record }, result: { kind: 'adopted', record } };
  }
  const subPool = n.spec.subPool && formatCidr(n.spec.subPool);
  if (cur.subPool !== subPool) {
    const theirs = cur.subPool ? `--ip-range ${cur.subPool}` : 'no --ip-range';
    throw new ConflictError(`subnet ${pool} is already used with ${theirs} on host(s) ${Object.keys(cur.holders).join(', ')}; ask for the same range`);
  }
  const record = withHolder(cur, n.host, heldBy(cur, n.host) + 1, n.at);
  return { change: { put: record }, result: { kind: 'joined', record } };
}

export interface LeaveResult {
  record: PoolRecord;
  /** False when the host held no reference (a repeated release, or one finishing after a crash). */
  left: boolean;
}

/** Dropping one of `host`'s references. The record stays, even with no holder: the caller drains it. */
export function decideLeave(cur: PoolRecord | null, poolId: string, host: string): Decision<LeaveResult> {
  if (!cur || cur.poolId !== poolId) throw new NotFoundError(`pool ${poolId} does not exist`);
  const n = heldBy(cur, host);
  if (n === 0) return { change: { keep: true }, result: { record: cur, left: false } };
  const record = withHolder(cur, host, n - 1);
  return { change: { put: record }, result: { record, left: true } };
}

/** Records the pool's gateway; a different one set meanwhile by another host wins. */
export function decideGateway(cur: PoolRecord | null, poolId: string, gateway: string): Decision<string> {
  if (!cur || cur.poolId !== poolId) throw new NotFoundError(`pool ${poolId} does not exist`);
  if (cur.gateway !== null) return { change: { keep: true }, result: cur.gateway };
  return { change: { put: { ...cur, gateway } }, result: gateway };
}

/** Forgets the pool's gateway once its lease is gone (the last host removed the network). */
export function decideGatewayGone(cur: PoolRecord | null, gateway: string): Decision<void> {
  if (!cur || cur.gateway !== gateway) return { change: { keep: true }, result: undefined };
  return { change: { put: { ...cur, gateway: null } }, result: undefined };
}
