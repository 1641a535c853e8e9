import {
  decideDone,
  decideDropHolder,
  decideReclaim,
  decideRejoin,
  decideRenew,
  HostRecord,
  hostStatus,
  ownedByDead,
  ReclaimedRecord,
  reclaimStalled,
} from '../src/core/hosts';
import type { PoolRecord } from '../src/core/records';

/** The host-record decisions, each over every state the record can be in when the CAS re-reads it. */
const T0 = Date.parse('2026-11-29T12:00:00Z');
const at = (ms: number) => new Date(T0 + ms);
const iso = (ms: number) => at(ms).toISOString();
const LEASE = 60_000;
const HELD = [{ poolId: 'weave:10.1.0.0/24', gateway: '10.1.0.1' }];

const live = (epoch: number, renewedMs = 0): HostRecord => ({ state: 'live', epoch, renewedAt: iso(renewedMs) });
const reclaimed = (epoch: number, o: Partial<ReclaimedRecord> = {}): ReclaimedRecord => ({
  state: 'reclaimed',
  epoch,
  renewedAt: iso(0),
  reclaimedBy: 'h2',
  reclaimedAt: iso(LEASE + 1),
  done: false,
  pools: HELD,
  ...o,
});

describe('decideRenew', () => {
  it.each<[string, HostRecord | null, number | null, { put?: HostRecord; result: unknown }]>([
    ['first start: registers at epoch 1', null, null, { put: live(1, 5), result: { kind: 'live', epoch: 1 } }],
    ['restart within the lease: takes the live epoch, its blocks are still its own', live(3), null, { put: live(3, 5), result: { kind: 'live', epoch: 3 } }],
    ['renewal', live(3), 3, { put: live(3, 5), result: { kind: 'live', epoch: 3 } }],
    ['record wiped while we held epoch 3: starts above it', null, 3, { put: live(4, 5), result: { kind: 'live', epoch: 4 } }],
    ['reclaimed while away: fenced, nothing written', reclaimed(4), 3, { result: { kind: 'fenced', record: reclaimed(4) } }],
    ['reclaimed, seen at start: fenced', reclaimed(4), null, { result: { kind: 'fenced', record: reclaimed(4) } }],
    ['live under another epoch (reclaimed and registered again meanwhile): fenced', live(4), 3, { result: { kind: 'fenced', record: live(4) } }],
  ])('%s', (_name, cur, epoch, want) => {
    const { change, result } = decideRenew(cur, epoch, at(5));
    expect(result).toEqual(want.result);
    expect(change).toEqual(want.put ? { put: want.put } : { keep: true });
  });
});

describe('decideReclaim', () => {
  const ask = (nowMs: number, force = false) => ({ by: 'h2', now: at(nowMs), leaseMs: LEASE, force, pools: HELD });
  it.each<[string, HostRecord | null, ReturnType<typeof ask>, { put?: HostRecord; result: unknown }]>([
    ['lease ran out: won, the epoch bumped', live(3), ask(LEASE + 1), { put: reclaimed(4), result: { kind: 'won', deadEpoch: 3, record: reclaimed(4) } }],
    ['lease not out yet: live, with the time left', live(3), ask(LEASE - 10_000), { result: { kind: 'live', leftMs: 10_000 } }],
    ['exactly at the lease: still live', live(3), ask(LEASE), { result: { kind: 'live', leftMs: 0 } }],
    ['rmpeer --force on a live host: won', live(3), ask(1000, true), { put: reclaimed(4, { reclaimedAt: iso(1000) }), result: { kind: 'won', deadEpoch: 3, record: reclaimed(4, { reclaimedAt: iso(1000) }) } }],
    ['another survivor won first: already, nothing written', reclaimed(4, { reclaimedBy: 'h3' }), ask(LEASE + 1), { result: { kind: 'already', record: reclaimed(4, { reclaimedBy: 'h3' }) } }],
    ['never registered: unknown', null, ask(LEASE + 1), { result: { kind: 'unknown' } }],
  ])('%s', (_name, cur, a, want) => {
    const { change, result } = decideReclaim(cur, a);
    expect(result).toEqual(want.result);
    expect(change).toEqual(want.put ? { put: want.put } : { keep: true });
  });

  /**
   * The dead host comes back exactly while a survivor reclaims it: both read the expired record,
   * one CAS lands, the other re-decides on what the first wrote.
   */
  it('a renewal that lands first calls the reclaim off', () => {
    const renewed = decideRenew(live(3), 3, at(LEASE + 1)).change;
    expect(renewed).toEqual({ put: live(3, LEASE + 1) });
    // The reclaimer's CAS failed; on the fresh read the host is live again.
    expect(decideReclaim(live(3, LEASE + 1), ask(LEASE + 2)).result).toEqual({ kind: 'live', leftMs: LEASE - 1 });
  });

  it('a reclaim that lands first fences the renewal', () => {
    const { change } = decideReclaim(live(3), ask(LEASE + 1));
    const now = (change as { put: HostRecord }).put;
    expect(decideRenew(now, 3, at(LEASE + 2))).toEqual({ change: { keep: true }, result: { kind: 'fenced', record: now } });
  });
});

describe('decideRejoin', () => {
  it.each<[string, HostRecord | null, { put?: HostRecord; result: unknown }]>([
    ['reclaim done: live again under the reclaim\'s epoch, with the pools to join', reclaimed(4, { done: true }), { put: live(4, 5), result: { kind: 'rejoined', epoch: 4, pools: HELD, released: [] } }],
    [
      'reclaim done with the addresses it released: the host gets them, to lease again',
      reclaimed(4, { done: true, released: [{ poolId: 'weave:10.1.0.0/24', address: '10.1.0.7' }] }),
      { put: live(4, 5), result: { kind: 'rejoined', epoch: 4, pools: HELD, released: [{ poolId: 'weave:10.1.0.0/24', address: '10.1.0.7' }] } },
    ],
    ['reclaim still running: wait', reclaimed(4), { result: { kind: 'wait', record: reclaimed(4) } }],
    ['already live (another process of ours): wait, it is not ours to take', live(4), { result: { kind: 'wait', record: live(4) } }],
    ['record gone: registers at 1', null, { put: live(1, 5), result: { kind: 'rejoined', epoch: 1, pools: [], released: [] } }],
  ])('%s', (_name, cur, want) => {
    const { change, result } = decideRejoin(cur, at(5));
    expect(result).toEqual(want.result);
    expect(change).toEqual(want.put ? { put: want.put } : { keep: true });
  });
});

describe('decideDone', () => {
  it.each<[string, HostRecord | null, boolean]>([
    ['marks its own reclaim', reclaimed(4), true],
    ['already marked', reclaimed(4, { done: true }), false],
    ['the host registered again meanwhile', live(4), false],
    ['a later reclaim', reclaimed(5), false],
    ['gone', null, false],
  ])('%s', (_name, cur, marked) => {
    const released = [{ poolId: 'weave:10.1.0.0/24', address: '10.1.0.7' }];
    const { change, result } = decideDone(cur, 4, released);
    expect(result).toBe(marked);
    expect(change).toEqual(marked ? { put: { ...cur, done: true, released } } : { keep: true });
  });
});

test('a reclaim stalls when not done a lease after it began', () => {
  expect(reclaimStalled(reclaimed(4), at(2 * LEASE + 1), LEASE)).toBe(false);
  expect(reclaimStalled(reclaimed(4), at(2 * LEASE + 2), LEASE)).toBe(true);
  expect(reclaimStalled(reclaimed(4, { done: true }), at(10 * LEASE), LEASE)).toBe(false);
});

test.each<[string, string, number | undefined, boolean]>([
  ['the dead host at the dead epoch', 'h1', 3, true],
  ['the dead host at an older epoch', 'h1', 1, true],
  ['written before epochs existed', 'h1', undefined, true],
  ['the host come back under its new epoch', 'h1', 4, false],
  ['another host', 'h2', 3, false],
])('ownedByDead: %s', (_name, owner, epoch, want) => {
  expect(ownedByDead(owner, epoch, 'h1', 3)).toBe(want);
});

test('decideDropHolder drops the whole reference of the host, and only of this pool incarnation', () => {
  const pool: PoolRecord = { poolId: 'weave:10.1.0.0/24', pool: '10.1.0.0/24', subPool: null, v6: false, gateway: null, blockSize: 16, gen: 'g', holders: { h1: 1, h2: 1 } };
  expect(decideDropHolder(pool, pool.poolId, 'h1')).toEqual({ change: { put: { ...pool, holders: { h2: 1 } } }, result: { ...pool, holders: { h2: 1 } } });
  expect(decideDropHolder(pool, pool.poolId, 'h3')).toEqual({ change: { keep: true }, result: null });
  expect(decideDropHolder(pool, 'weave:10.1.0.0/24:10.1.0.0/25', 'h1')).toEqual({ change: { keep: true }, result: null });
  expect(decideDropHolder(null, pool.poolId, 'h1')).toEqual({ change: { keep: true }, result: null });
});

test('hostStatus: time left on a live lease, negative when overdue; who reclaimed', () => {
  expect(hostStatus({ host: 'h1', record: live(2) }, at(40_000), LEASE)).toEqual({ host: 'h1', state: 'live', epoch: 2, renewedAt: iso(0), leaseLeftMs: 20_000 });
  expect(hostStatus({ host: 'h1', record: live(2) }, at(70_000), LEASE)).toMatchObject({ leaseLeftMs: -10_000 });
  expect(hostStatus({ host: 'h1', record: reclaimed(3) }, at(70_000), LEASE)).toEqual({
    host: 'h1',
    state: 'reclaimed',
    epoch: 3,
    renewedAt: iso(0),
    reclaimedBy: 'h2',
    reclaimedAt: iso(LEASE + 1),
    done: false,
  });
});
