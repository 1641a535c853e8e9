import type { Mutation } from '@weave/bus';
import { HeldAddress, HeldPool, HostRecord, HostStatus, type ReclaimedRecord } from '@weave/contracts';
import { z } from 'zod';
import type { PoolRecord } from './records';

/**
 * One record per ipam host, mesh-wide: the host renews it by compare-and-set while it lives, and
 * a survivor marks it reclaimed once the lease ran out. The epoch fences: every block (and lease)
 * a host writes carries the epoch it registered with, a reclaim bumps it, and the reclaimer only
 * removes keys of the older epochs, so a host that comes back and writes under a new epoch is
 * never touched, and keys it wrote before are never mistaken for new ones.
 *
 * Like records.ts, the decisions here are pure: the table applies them by CAS and re-decides on a
 * fresh read when someone wrote in between. That is what settles a renew racing a reclaim: one
 * CAS lands, the other re-decides on what it wrote.
 */
// The schemas are in contracts since plugin-api reads the records too (its DNS cleanup).
export { HeldAddress, HeldPool, HostRecord, type ReclaimedRecord };

type Decision<R> = { change: Mutation<HostRecord>; result: R };

const iso = (d: Date): string => d.toISOString();
const age = (since: string, now: Date): number => now.getTime() - Date.parse(since);

export const expired = (r: HostRecord, now: Date, leaseMs: number): boolean => r.state === 'live' && age(r.renewedAt, now) > leaseMs;

export type RenewResult = { kind: 'live'; epoch: number } | { kind: 'fenced'; record: HostRecord };

/**
 * The host renews its record. `epoch` null: at start, when it does not know its epoch yet; it
 * takes the live record's, because the blocks of a restart within the lease are still its own.
 * A record with another epoch than ours, or reclaimed, means our keys of that epoch are no longer
 * ours: fenced, nothing written.
 */
export function decideRenew(cur: HostRecord | null, epoch: number | null, now: Date): Decision<RenewResult> {
  if (!cur) {
    // Our record gone (a wiped bucket) while we think we hold an epoch: start over above it.
    const record: HostRecord = { state: 'live', epoch: (epoch ?? 0) + 1, renewedAt: iso(now) };
    return { change: { put: record }, result: { kind: 'live', epoch: record.epoch } };
  }
  if (cur.state === 'reclaimed' || (epoch !== null && cur.epoch !== epoch)) return { change: { keep: true }, result: { kind: 'fenced', record: cur } };
  return { change: { put: { ...cur, renewedAt: iso(now) } }, result: { kind: 'live', epoch: cur.epoch } };
}

export type RejoinResult = { kind: 'rejoined'; epoch: number; pools: HeldPool[]; released: HeldAddress[] } | { kind: 'wait'; record: HostRecord };

/**
 * A fenced host registers again, only once the reclaim is done (before that the reclaimer may
 * still drop pool references the host would take again). Its new epoch is the one the reclaim
 * set, above every key the reclaimer removes.
 */
export function decideRejoin(cur: HostRecord | null, now: Date): Decision<RejoinResult> {
  if (!cur) return { change: { put: { state: 'live', epoch: 1, renewedAt: iso(now) } }, result: { kind: 'rejoined', epoch: 1, pools: [], released: [] } };
  if (cur.state === 'live' || !cur.done) return { change: { keep: true }, result: { kind: 'wait', record: cur } };
  const record: HostRecord = { state: 'live', epoch: cur.epoch, renewedAt: iso(now) };
  return { change: { put: record }, result: { kind: 'rejoined', epoch: cur.epoch, pools: cur.pools, released: cur.released ?? [] } };
}

export interface ReclaimAsk {
  by: string;
  now: Date;
  leaseMs: number;
  /** rmpeer --force: also a host whose lease has not run out. */
  force: boolean;
  /** The pools the host holds, as the reclaimer read them: recorded so the host can join them again. */
  pools: HeldPool[];
}

export type ReclaimResult =
  | { kind: 'won'; deadEpoch: number; record: ReclaimedRecord }
  | { kind: 'already'; record: ReclaimedRecord }
  | { kind: 'live'; leftMs: number }
  | { kind: 'unknown' };

/**
 * Electing the one reclaimer: the CAS of the dead host's record from live to reclaimed. Whoever
 * lands it removes the host's keys; everyone else (another survivor, a second rmpeer) is told who
 * did. A renewal that lands first makes the host live again and the reclaim is off.
 */
export function decideReclaim(cur: HostRecord | null, a: ReclaimAsk): Decision<ReclaimResult> {
  if (!cur) return { change: { keep: true }, result: { kind: 'unknown' } };
  if (cur.state === 'reclaimed') return { change: { keep: true }, result: { kind: 'already', record: cur } };
  if (!a.force && !expired(cur, a.now, a.leaseMs)) return { change: { keep: true }, result: { kind: 'live', leftMs: a.leaseMs - age(cur.renewedAt, a.now) } };
  const record: ReclaimedRecord = {
    state: 'reclaimed',
    epoch: cur.epoch + 1,
    renewedAt: cur.renewedAt,
    reclaimedBy: a.by,
    reclaimedAt: iso(a.now),
    done: false,
    pools: a.pools,
  };
  return { change: { put: record }, result: { kind: 'won', deadEpoch: cur.epoch, record } };
}

/**
 * The reclaim finished, with the addresses it released. Only the reclaim it belongs to (same epoch) is marked: a host that
 * registered again meanwhile, or a later reclaim, is left as it is.
 */
export function decideDone(cur: HostRecord | null, epoch: number, released: HeldAddress[]): Decision<boolean> {
  if (!cur || cur.state !== 'reclaimed' || cur.epoch !== epoch || cur.done) return { change: { keep: true }, result: false };
  return { change: { put: { ...cur, done: true, released } }, result: true };
}

/**
 * A reclaim not marked done long after it began: its reclaimer died half-way. The host itself,
 * coming back, then finishes it (the same CAS-guarded removals) rather than wait for ever.
 */
export const reclaimStalled = (r: ReclaimedRecord, now: Date, leaseMs: number): boolean => !r.done && age(r.reclaimedAt, now) > leaseMs;

/** Is `owner`/`epoch` a key of the host reclaimed at `deadEpoch`? Keys without an epoch predate fencing: the first epoch's. */
export const ownedByDead = (owner: string, epoch: number | undefined, dead: string, deadEpoch: number): boolean =>
  owner === dead && (epoch ?? 1) <= deadEpoch;

/**
 * The dead host's reference on a pool goes with it, whatever its count, so the pool is torn down
 * when its last live holder leaves. Returns whether there was one to drop.
 */
export function decideDropHolder(cur: PoolRecord | null, poolId: string, host: string): { change: Mutation<PoolRecord>; result: PoolRecord | null } {
  if (!cur || cur.poolId !== poolId || !(host in cur.holders)) return { change: { keep: true }, result: null };
  const { [host]: _gone, ...holders } = cur.holders;
  const record = { ...cur, holders };
  return { change: { put: record }, result: record };
}

export interface HostView {
  host: string;
  record: HostRecord;
}

/** Each host as status shows it: how long until a silent host's blocks are reclaimed (negative: overdue). */
export function hostStatus(h: HostView, now: Date, leaseMs: number): z.output<typeof HostStatus> {
  const r = h.record;
  const base = { host: h.host, epoch: r.epoch, renewedAt: r.renewedAt };
  if (r.state === 'live') return { ...base, state: 'live', leaseLeftMs: leaseMs - age(r.renewedAt, now) };
  return { ...base, state: 'reclaimed', reclaimedBy: r.reclaimedBy, reclaimedAt: r.reclaimedAt, done: r.done };
}
