import type { Mutation } from '@weave/bus';
import type { LeaseRecord } from './records';

/**
 * Leases that stick to a container's own MAC (StickyLease in @weave/contracts), as pure
 * decisions. Each is applied by compare-and-set on one lease key and re-run on a fresh read when
 * somebody wrote in between, so a kept address is handed to exactly one taker, and never while an
 * endpoint has it.
 */
type Decision<R> = { change: Mutation<LeaseRecord>; result: R };
const keep = <R>(result: R): Decision<R> => ({ change: { keep: true }, result });

/** Docker released it and it is kept for its MAC. */
export const isKept = (l: LeaseRecord): boolean => l.sticky?.releasedAt !== undefined;

/** An endpoint of `host` has it, and it sticks to that endpoint's MAC. */
const stuckLive = (l: LeaseRecord, host: string): boolean => l.host === host && l.kind === 'endpoint' && l.sticky !== undefined && !isKept(l);

/** Kept, and released before `before`: it may go. */
export const keptExpired = (l: LeaseRecord, before: Date): boolean => isKept(l) && Date.parse(l.sticky!.releasedAt!) < before.getTime();

/**
 * ReleaseAddress of an address that sticks to its MAC: kept for it, released at `at` (result
 * true). Already kept: a repeated release, nothing to do (true). Anything else is released as
 * usual (false).
 */
export function decideKeep(cur: LeaseRecord | null, host: string, at: string): Decision<boolean> {
  if (cur && isKept(cur)) return keep(true);
  if (!cur || !stuckLive(cur, host)) return keep(false);
  return { change: { put: { ...cur, sticky: { mac: cur.sticky!.mac, releasedAt: at } } }, result: true };
}

/**
 * A start of the container with `mac`: the address kept for it on `host` becomes its lease
 * (`lease`, made now, so reconciliation treats it as the allocation in flight it is). False when
 * it is no longer kept for that MAC there, or is of another incarnation of the pool.
 */
export function decideReturn(cur: LeaseRecord | null, host: string, mac: string, lease: LeaseRecord): Decision<boolean> {
  if (!cur || !isKept(cur) || cur.host !== host || cur.sticky!.mac !== mac || cur.gen !== lease.gen) return keep(false);
  return { change: { put: { ...lease, sticky: { mac } } }, result: true };
}

/**
 * A request that names the address (or finds nothing else free) takes a kept address over: what
 * it took (`kept`, or `free` when the kept lease went meanwhile), or null when an endpoint has it.
 */
export function decideTakeOver(cur: LeaseRecord | null, lease: LeaseRecord): Decision<'kept' | 'free' | null> {
  if (cur && !isKept(cur)) return keep(null);
  return { change: { put: lease }, result: cur ? 'kept' : 'free' };
}

/** CreateEndpoint with the user's MAC: the endpoint lease of `host` sticks to it; null, or why not. */
export function decideStick(cur: LeaseRecord | null, host: string, mac: string): Decision<string | null> {
  if (!cur || cur.host !== host || cur.kind !== 'endpoint' || isKept(cur)) return keep('no endpoint of this host has that address');
  if (cur.sticky?.mac === mac) return keep(null);
  return { change: { put: { ...cur, sticky: { mac } } }, result: null };
}

/** The MAC moved to another endpoint (the latest to claim it wins): this live lease sticks to it no more. */
export function decideUnstick(cur: LeaseRecord | null, host: string, mac: string): Decision<boolean> {
  if (!cur || !stuckLive(cur, host) || cur.sticky!.mac !== mac) return keep(false);
  const { sticky: _gone, ...rest } = cur;
  return { change: { put: rest }, result: true };
}

/** The MAC sticks to another address now: the one kept for it here is released. */
export function decideLetGo(cur: LeaseRecord | null, mac: string): Decision<boolean> {
  if (!cur || !isKept(cur) || cur.sticky!.mac !== mac) return keep(false);
  return { change: { delete: true }, result: true };
}

/** A lease as the mirror has it, with the address its key names. */
export interface StickyEntry {
  key: string;
  address: bigint;
  value: LeaseRecord;
}

/**
 * What a dynamic request with `mac` may get back, from `host`'s leases of the pool that stick to
 * it: the one kept address, when no endpoint of the host has that MAC now (it could be a second
 * container with the same MAC, or the leftover of a release that never reached us; either way
 * the address is not free) and nothing else is kept for it. `usable` says whether an address may
 * be handed out in this request (its range, this host's epoch and pool incarnation).
 */
export function returnable(leases: readonly StickyEntry[], host: string, mac: string, usable: (e: StickyEntry) => boolean): StickyEntry | null {
  const mine = leases.filter((e) => e.value.host === host && e.value.sticky?.mac === mac);
  if (mine.some((e) => !isKept(e.value))) return null;
  const kept = mine.filter(usable);
  return kept.length === 1 ? kept[0]! : null;
}

/** The kept addresses an allocation with nothing else free may take, `host`'s own first, then the longest kept. */
export function evictionOrder(leases: readonly StickyEntry[], host: string): StickyEntry[] {
  const released = (e: StickyEntry) => Date.parse(e.value.sticky!.releasedAt!);
  return leases
    .filter((e) => isKept(e.value))
    .sort((a, b) => Number(b.value.host === host) - Number(a.value.host === host) || released(a) - released(b) || (a.address < b.address ? -1 : 1));
}
