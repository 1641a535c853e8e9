import { UnavailableError } from '@weave/errors';
import { waitFor } from '@weave/sync';
import { silentLogger } from '@weave/log';
import { parseCidr } from '@weave/netaddr';
import type { HostRecord } from '../src/core/hosts';
import type { BlockRecord, LeaseRecord, PoolRecord } from '../src/core/records';
import { ALWAYS_LIVE, IpamDeps } from '../src/deps';
import { StaticRoutes } from '../src/host-routes';
import { HostLease } from '../src/hosts';
import { Pools } from '../src/pools';
import { Reclaimer } from '../src/reclaimer';
import { memoryStore } from '../src/store-memory';
import { Views } from '../src/views';

/**
 * The reclaimer and the host lease over the in-memory store, where the test writes exactly the
 * keys a race would leave behind: which of them a reclaim may remove, and what a returning host
 * does while its reclaim is unfinished.
 */
const LEASE = 60_000;
const T0 = Date.parse('2026-11-29T12:00:00Z');

function setup() {
  const clock = { t: T0 };
  const store = memoryStore();
  const events: Array<{ kind: string; data: unknown }> = [];
  const node = (host: string) => {
    const base = { host, store, events: { publish: (kind: string, data: unknown) => void events.push({ kind, data }) }, log: silentLogger(), now: () => new Date(clock.t) };
    const deps: IpamDeps = { ...base, routes: new StaticRoutes(), config: { defaultRange: parseCidr('10.32.0.0/12'), defaultPrefix: 24, blockSize: 16 }, membership: ALWAYS_LIVE, newId: () => 'g2', randomBytes: (n) => new Uint8Array(n) };
    const pools = new Pools(deps, new Views(deps));
    const reclaimer = new Reclaimer({ ...base, leaseMs: LEASE, drain: (key) => pools.drain(key) });
    const rejoined: unknown[] = [];
    const duringRejoin: Array<{ serving: string | null; live: string | null }> = [];
    const rejoin = async (p: readonly unknown[]) => {
      rejoined.push(...p);
      // While re-leasing, Docker's requests wait; the re-leasing itself (past assertServing) runs.
      duringRejoin.push({ serving: threw(() => lease.assertServing()), live: threw(() => lease.assertLive()) });
      return [];
    };
    const lease = new HostLease({ ...base, reclaimer, rejoin }, { renewMs: 10_000, leaseMs: LEASE });
    return { reclaimer, lease, rejoined, duringRejoin };
  };
  return { clock, store, events, node };
}

const threw = (f: () => void): string | null => {
  try {
    f();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
};

const POOL = 'v4-0a010000-24';
const pool: PoolRecord = { poolId: 'weave:10.1.0.0/24', pool: '10.1.0.0/24', subPool: null, v6: false, gateway: '10.1.0.1', blockSize: 16, gen: 'g', holders: { h1: 1, h3: 1 } };
const block = (owner: string, epoch: number): BlockRecord => ({ owner, epoch, claimedAt: new Date(T0).toISOString(), gen: 'g' });
const lease = (host: string, kind: LeaseRecord['kind'], epoch?: number): LeaseRecord => ({ host, kind, time: new Date(T0).toISOString(), gen: 'g', ...(epoch ? { epoch } : {}) });
const live = (epoch: number, at = T0): HostRecord => ({ state: 'live', epoch, renewedAt: new Date(at).toISOString() });

test('a reclaim removes the dead host\'s endpoint leases and blocks of its dead epoch and before, and nothing else', async () => {
  const { store, node, clock } = setup();
  await store.pools.create(POOL, pool);
  await store.hosts.create('h3', live(1));
  await store.blocks.create(`${POOL}.0a010000`, block('h3', 1));
  await store.blocks.create(`${POOL}.0a010010`, block('h3', 2)); // written under a newer epoch: not the dead one's
  await store.blocks.create(`${POOL}.0a010020`, block('h1', 1));
  await store.leases.create(`${POOL}.0a010001`, lease('h3', 'gateway', 1)); // the network's, which h1 still has
  await store.leases.create(`${POOL}.0a010002`, lease('h3', 'endpoint', 1));
  await store.leases.create(`${POOL}.0a010003`, lease('h3', 'endpoint')); // from before epochs
  await store.leases.create(`${POOL}.0a010011`, lease('h3', 'endpoint', 2));
  await store.leases.create(`${POOL}.0a010021`, lease('h1', 'endpoint', 1));
  clock.t += LEASE + 1;

  const out = await node('h1').reclaimer.reclaim('h3', false);
  expect(out).toEqual({
    kind: 'reclaimed',
    host: 'h3',
    epoch: 1,
    blocks: [{ poolId: pool.poolId, block: '10.1.0.0/28' }],
    addresses: [
      { poolId: pool.poolId, address: '10.1.0.2' },
      { poolId: pool.poolId, address: '10.1.0.3' },
    ],
    pools: [pool.poolId],
  });
  expect(store.mirrors.blocks.keys().sort()).toEqual([`${POOL}.0a010010`, `${POOL}.0a010020`]);
  expect(store.mirrors.leases.keys().sort()).toEqual([`${POOL}.0a010001`, `${POOL}.0a010011`, `${POOL}.0a010021`]);
  expect((await store.pools.get(POOL))?.value.holders).toEqual({ h1: 1 });
  expect((await store.hosts.get('h3'))?.value).toMatchObject({ state: 'reclaimed', epoch: 2, done: true, reclaimedBy: 'h1', pools: [{ poolId: pool.poolId, gateway: '10.1.0.1' }] });
});

test('a returning host waits while its reclaim runs, finishes one whose reclaimer stopped, cleans up after it, and registers again', async () => {
  const { store, node, clock, events } = setup();
  await store.pools.create(POOL, { ...pool, holders: { h1: 1 } });
  const h3 = node('h3');
  await h3.lease.start();
  expect(h3.lease.epoch()).toBe(1);
  await h3.lease.stop();
  // h3 goes quiet; h1 wins the reclaim and stops before removing anything (the record says so).
  clock.t += LEASE + 1;
  await store.hosts.mutate('h3', (cur) => ({
    change: { put: { state: 'reclaimed', epoch: 2, renewedAt: (cur as HostRecord).renewedAt, reclaimedBy: 'h1', reclaimedAt: new Date(clock.t).toISOString(), done: false, pools: [] } },
    result: null,
  }));
  // Meanwhile h3, before noticing, leased once more under epoch 1 (after the reclaimer would have listed).
  await store.blocks.create(`${POOL}.0a010000`, block('h3', 1));
  await store.leases.create(`${POOL}.0a010005`, lease('h3', 'endpoint', 1));

  await h3.lease.tick();
  expect(() => h3.lease.assertLive()).toThrow(UnavailableError);
  expect(() => h3.lease.assertLive()).toThrow(/its record was reclaimed by h1/);
  expect((await store.hosts.get('h3'))?.value).toMatchObject({ state: 'reclaimed', done: false });
  expect(events.map((e) => e.kind)).toEqual(['host.fenced']);

  // Still unfinished a lease later: the reclaimer is gone, h3 finishes its own reclaim.
  clock.t += LEASE + 1;
  await h3.lease.tick();
  expect(() => h3.lease.assertLive()).not.toThrow();
  expect(h3.lease.epoch()).toBe(2);
  expect(store.mirrors.blocks.keys()).toEqual([]);
  expect(store.mirrors.leases.keys()).toEqual([]);
  expect((await store.hosts.get('h3'))?.value).toEqual(live(2, clock.t));
  expect(events.map((e) => e.kind)).toEqual(['host.fenced', 'address.released', 'block.released', 'host.reclaimed', 'host.rejoined']);
  expect(h3.duringRejoin).toEqual([{ serving: 'ipam on h3 allocates nothing now: it is registering again after a reclaim; retry shortly', live: null }]);
  expect(() => h3.lease.assertServing()).not.toThrow();
});

test('a host that cannot renew for nearly a lease (one renewal period short) refuses to allocate until a renewal lands', async () => {
  const { store, node, clock } = setup();
  const h1 = node('h1');
  await h1.lease.start();
  await h1.lease.stop();
  clock.t += LEASE - 10_000 - 1;
  expect(() => h1.lease.assertLive()).not.toThrow();
  clock.t += 1;
  expect(() => h1.lease.assertLive()).toThrow(/could not renew its lease for 50 s, so its blocks may be reclaimed/);
  await h1.lease.tick();
  expect(() => h1.lease.assertLive()).not.toThrow();
  expect((await store.hosts.get('h1'))?.value).toEqual(live(1, clock.t));
});

test('a survivor finishes a reclaim whose reclaimer stopped half-way', async () => {
  const { store, node, clock } = setup();
  await store.pools.create(POOL, pool);
  await store.hosts.create('h3', { state: 'reclaimed', epoch: 2, renewedAt: new Date(T0).toISOString(), reclaimedBy: 'h9', reclaimedAt: new Date(T0).toISOString(), done: false, pools: [{ poolId: pool.poolId, gateway: null }] });
  await store.blocks.create(`${POOL}.0a010000`, block('h3', 1));
  const h1 = node('h1');
  await h1.lease.start();
  expect(store.mirrors.blocks.keys()).toEqual([`${POOL}.0a010000`]);
  clock.t += LEASE + 1;
  await h1.lease.tick();
  expect(store.mirrors.blocks.keys()).toEqual([]);
  expect((await store.pools.get(POOL))?.value.holders).toEqual({ h1: 1 });
  expect((await store.hosts.get('h3'))?.value).toMatchObject({ done: true, reclaimedBy: 'h9' });
  await h1.lease.stop();
});

/** Host h1, started while its first registration write fails (the KV without quorum yet): not registered. */
async function startedWithFailedRegistration() {
  const { store, node } = setup();
  const mutate = store.hosts.mutate.bind(store.hosts);
  let failures = 1;
  store.hosts.mutate = (key, decide) => (failures-- > 0 ? Promise.reject(new UnavailableError('JetStream KV weave-ipam-hosts: update h1 failed')) : mutate(key, decide));
  const h1 = node('h1');
  await h1.lease.start();
  return h1;
}

test('a host whose first registration fails refuses to allocate and tries again within a second, not a renewal period later', async () => {
  const h1 = await startedWithFailedRegistration();
  expect(() => h1.lease.assertLive()).toThrow('ipam on h1 allocates nothing now: it has not registered yet');
  await waitFor(() => h1.lease.epoch() === 1, { what: 'the second try to register', timeoutMs: 3000 });
  expect(() => h1.lease.assertLive()).not.toThrow();
  await h1.lease.stop();
});

test('a request that comes while the host is still registering waits for it, within its deadline, instead of failing at once', async () => {
  const h1 = await startedWithFailedRegistration();
  expect(h1.lease.epoch()).toBe(0);
  // A caller with 600 ms left: the margin leaves it 100 ms, short of the retry a second later.
  const t0 = Date.now();
  await expect(h1.lease.whenServing(Date.now() + 600)).rejects.toThrow('ipam on h1 allocates nothing now: it has not registered yet');
  expect(Date.now() - t0).toBeLessThan(600);
  // A caller with 10 s: answered once the retry registers the host.
  await h1.lease.whenServing(Date.now() + 10_000);
  expect(h1.lease.epoch()).toBe(1);
  await h1.lease.stop();
});
