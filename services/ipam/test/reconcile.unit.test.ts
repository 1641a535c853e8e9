import { silentLogger } from '@weave/log';
import { parseCidr } from '@weave/netaddr';
import { LeaseEntry, leaseVerdict, LeaseVerdict, planLeaseSweep, poolVerdict } from '../src/core/reconcile';
import type { LeaseRecord, PoolRecord } from '../src/core/records';
import { ALWAYS_LIVE, IpamDeps } from '../src/deps';
import { StaticRoutes } from '../src/host-routes';
import { Ipam } from '../src/ipam';
import { memoryStore } from '../src/store-memory';

/**
 * Which leases reconciliation against Docker releases. The listing began at 12:00:00 and the
 * grace period is a minute, so `olderThan` is 11:59:00: a lease made after it may belong to an
 * endpoint Docker has not recorded yet (RequestAddress answered, CreateEndpoint still to come).
 */
const olderThan = new Date('2026-11-29T11:59:00.000Z');
const lease = (o: Partial<LeaseRecord> = {}): LeaseRecord => ({ host: 'h1', kind: 'endpoint', time: '2026-11-29T11:00:00.000Z', gen: 'g1', ...o });
const entry = (address: bigint, o: Partial<LeaseRecord> = {}): LeaseEntry => ({ address, value: lease(o), revision: 1 });

describe('leaseVerdict', () => {
  const keep = new Set([5n]);
  const cases: Array<[string, LeaseEntry, LeaseVerdict]> = [
    ['an old endpoint lease Docker has: kept', entry(5n), 'keep'],
    ['an old endpoint lease Docker does not have: a leak, released', entry(6n), 'release'],
    ['one made a millisecond before olderThan: released', entry(6n, { time: '2026-11-29T11:58:59.999Z' }), 'release'],
    ['one made exactly at olderThan: spared (only strictly older goes)', entry(6n, { time: '2026-11-29T11:59:00.000Z' }), 'spare'],
    ['one made within the grace period, Docker not having it yet (in flight): spared', entry(6n, { time: '2026-11-29T11:59:30.000Z' }), 'spare'],
    ['one made after the listing began (the listing cannot have it): spared', entry(6n, { time: '2026-11-29T12:00:05.000Z' }), 'spare'],
    ['a young lease Docker already has: kept', entry(5n, { time: '2026-11-29T11:59:59.000Z' }), 'keep'],
    ["another host's lease: kept, its own host judges it", entry(6n, { host: 'h2' }), 'keep'],
    ['a gateway lease: kept, it belongs to the network', entry(6n, { kind: 'gateway' }), 'keep'],
    ['an aux lease: kept', entry(6n, { kind: 'aux' }), 'keep'],
    ['a lease of an older pool incarnation: still ours and unused, released', entry(6n, { gen: 'g0' }), 'release'],
  ];
  it.each(cases)('%s', (_what, l, verdict) => {
    expect(leaseVerdict(l, { host: 'h1', keep, olderThan })).toBe(verdict);
  });

  it('a time that does not parse is spared: we cannot tell how old it is', () => {
    const l: LeaseEntry = { address: 6n, value: { ...lease(), time: 'yesterday' }, revision: 1 };
    expect(leaseVerdict(l, { host: 'h1', keep, olderThan })).toBe('spare');
  });
});

describe('planLeaseSweep', () => {
  it('releases the leaks, counts the spared, ignores what is not ours', () => {
    const plan = planLeaseSweep({
      host: 'h1',
      keep: new Set([2n]),
      olderThan,
      leases: [entry(2n), entry(3n), entry(4n, { time: '2026-11-29T11:59:10.000Z' }), entry(5n, { host: 'h2' }), entry(1n, { kind: 'gateway' })],
    });
    expect(plan.release.map((l) => l.address)).toEqual([3n]);
    expect(plan.spared).toBe(1);
  });
});

describe('poolVerdict', () => {
  const record = (o: Partial<PoolRecord> = {}): PoolRecord => ({
    poolId: 'weave:10.99.0.0/24',
    pool: '10.99.0.0/24',
    subPool: null,
    v6: false,
    gateway: '10.99.0.1',
    blockSize: 16,
    gen: 'g1',
    holders: { h1: 1 },
    since: { h1: '2026-11-29T11:00:00.000Z' },
    ...o,
  });
  const key = 'v4-0a630000-24';
  const unknownAge = new Date('2026-11-29T10:00:00.000Z');
  const cases: Array<{ what: string; record: PoolRecord; docker: string[]; verdict: LeaseVerdict; started?: Date }> = [
    { what: 'a pool Docker has a network for: kept', record: record(), docker: [key], verdict: 'keep' },
    { what: 'an old reference Docker has no network for (ReleasePool missed): released', record: record(), docker: [], verdict: 'release' },
    { what: 'a reference taken within the grace period (network being created): spared', record: record({ since: { h1: '2026-11-29T11:59:30.000Z' } }), docker: [], verdict: 'spare' },
    { what: "a pool only other hosts hold: not this host's to judge", record: record({ holders: { h2: 1 }, since: { h2: '2026-11-29T11:00:00.000Z' } }), docker: [], verdict: 'keep' },
    { what: 'a reference without a time, ipam started long ago: released', record: record({ since: undefined }), docker: [], verdict: 'release' },
    { what: 'a reference without a time, ipam started within the grace period: spared', record: record({ since: undefined }), docker: [], verdict: 'spare', started: new Date('2026-11-29T11:59:50.000Z') },
  ];
  it.each(cases)('$what', ({ record: r, docker, verdict, started }) => {
    expect(poolVerdict({ key, record: r }, { host: 'h1', docker: new Set(docker), olderThan, unknownAge: started ?? unknownAge })).toBe(verdict);
  });
});

describe('Ipam.reconcileHost over the in-memory store', () => {
  let clock = new Date('2026-11-29T11:00:00.000Z');
  let ids = 0;
  const instance = (host: string, store = memoryStore()) => {
    const events: Array<{ kind: string; data: unknown }> = [];
    const deps: IpamDeps = {
      host,
      store,
      routes: new StaticRoutes(),
      events: { publish: (kind: string, data: unknown) => void events.push({ kind, data }) },
      log: silentLogger(),
      config: { defaultRange: parseCidr('10.32.0.0/12'), defaultPrefix: 24, blockSize: 16 },
      membership: ALWAYS_LIVE,
      now: () => clock,
      newId: () => `gen-${++ids}`,
      randomBytes: (n: number) => new Uint8Array(n).fill(0x5a),
    };
    return { ipam: new Ipam(deps), events, store };
  };
  const net = { addressSpace: 'weave-local', pool: '10.99.0.0/24', subPool: null, v6: false, options: {} };
  const addr = async (ipam: Ipam, poolId: string, address: string | null = null) =>
    (await ipam.requestAddress({ poolId, address, kind: 'endpoint' })).address.split('/')[0]!;

  beforeEach(() => {
    clock = new Date('2026-11-29T11:00:00.000Z');
  });

  it('releases old leaks, spares young ones and keeps what Docker has; the released address is handed out again', async () => {
    const { ipam, events, store } = instance('h1');
    const { poolId } = await ipam.requestPool(net);
    const gateway = (await ipam.requestAddress({ poolId, address: null, kind: 'gateway' })).address.split('/')[0]!;
    const live = await addr(ipam, poolId); // 10.99.0.2
    const leaked = await addr(ipam, poolId); // 10.99.0.3: its reply was lost
    const aux = await addr(ipam, poolId, '10.99.0.200'); // --aux-address comes as an endpoint request
    clock = new Date('2026-11-29T11:59:30.000Z');
    const inFlight = await addr(ipam, poolId); // 10.99.0.4: Docker has not recorded it yet

    const r = await ipam.reconcileHost({ pools: [{ subnet: '10.99.0.0/24', keep: [gateway, live, aux] }], olderThan: '2026-11-29T11:59:00.000Z' });
    expect(r).toEqual({ released: [{ poolId, address: leaked, leasedAt: '2026-11-29T11:00:00.000Z' }], releasedPools: [], spared: 1 });
    expect(events.filter((e) => e.kind === 'address.released')).toEqual([{ kind: 'address.released', data: { poolId, address: leaked } }]);
    expect(events.filter((e) => e.kind === 'leases.reconciled')).toEqual([{ kind: 'leases.reconciled', data: r }]);

    // The view was refreshed: the lowest free address is the released one again.
    expect(await addr(ipam, poolId)).toBe(leaked);
    expect(inFlight).toBe('10.99.0.4');
    expect(store.mirrors.leases.keys()).toHaveLength(5); // gateway, live, leaked-then-reused, aux, in flight
  });

  it("never releases another host's leases, and a pass with nothing to drop publishes nothing", async () => {
    const store = memoryStore();
    const h1 = instance('h1', store);
    const h2 = instance('h2', store);
    const { poolId } = await h1.ipam.requestPool(net);
    await h2.ipam.requestPool(net);
    await addr(h2.ipam, poolId);
    const r = await h1.ipam.reconcileHost({ pools: [{ subnet: '10.99.0.0/24', keep: [] }], olderThan: '2026-11-29T12:00:00.000Z' });
    expect(r).toEqual({ released: [], releasedPools: [], spared: 0 });
    expect(store.mirrors.leases.keys()).toHaveLength(1);
    expect(h1.events.some((e) => e.kind === 'leases.reconciled')).toBe(false);
  });

  it('a subnet ipam has no pool for is skipped; addresses of other pools in `keep` are ignored', async () => {
    const { ipam } = instance('h1');
    const { poolId } = await ipam.requestPool(net);
    const a = await addr(ipam, poolId);
    const r = await ipam.reconcileHost({
      pools: [{ subnet: '10.98.0.0/24', keep: [] }, { subnet: '10.99.0.0/24', keep: ['10.98.0.5', 'fd00::1', a] }],
      olderThan: '2026-11-29T12:00:00.000Z',
    });
    expect(r).toEqual({ released: [], releasedPools: [], spared: 0 });
  });

  it('a lease released and leased again after the mirror was read is not taken (decided again on a fresh read)', async () => {
    const { ipam, store } = instance('h1');
    const { poolId } = await ipam.requestPool(net);
    await addr(ipam, poolId);
    // Between the sweep's look at the mirror and its delete, the address is released and leased
    // again (a --ip on another host, say): written straight to the store, as another process would.
    const key = store.mirrors.leases.keys()[0]!;
    const get = store.leases.get.bind(store.leases);
    let raced = false;
    store.leases.get = async (k: string) => {
      if (k === key && !raced) {
        raced = true;
        const cur = (await get(k))!;
        await store.leases.deleteAt(k, cur.revision);
        await store.leases.create(k, { ...cur.value, time: '2026-11-29T12:00:01.000Z' });
      }
      return get(k);
    };
    const r = await ipam.reconcileHost({ pools: [{ subnet: '10.99.0.0/24', keep: [] }], olderThan: '2026-11-29T11:59:00.000Z' });
    expect(r.released).toEqual([]);
    expect((await get(key))?.value.time).toBe('2026-11-29T12:00:01.000Z');
  });

  it('a pool whose network Docker removed while ipam was down is released: the subnet can be used again', async () => {
    const { ipam, events, store } = instance('h1');
    const { poolId } = await ipam.requestPool(net);
    await ipam.requestAddress({ poolId, address: null, kind: 'gateway' });
    await addr(ipam, poolId);
    const r = await ipam.reconcileHost({ pools: [], olderThan: '2026-11-29T11:59:00.000Z' });
    expect(r).toEqual({ released: [], releasedPools: [{ poolId, pool: '10.99.0.0/24' }], spared: 0 });
    expect({ pools: store.mirrors.pools.keys(), blocks: store.mirrors.blocks.keys(), leases: store.mirrors.leases.keys() }).toEqual({ pools: [], blocks: [], leases: [] });
    expect(events.filter((e) => e.kind === 'pool.released')).toHaveLength(1);
    await expect(ipam.requestPool(net)).resolves.toMatchObject({ pool: '10.99.0.0/24' });
  });

  it("another host still holding the pool keeps it, its gateway and its leases; only this host's reference and endpoint leases go", async () => {
    const store = memoryStore();
    const h1 = instance('h1', store);
    const h2 = instance('h2', store);
    const { poolId } = await h1.ipam.requestPool(net);
    await h1.ipam.requestAddress({ poolId, address: null, kind: 'gateway' });
    await h2.ipam.requestPool(net);
    const mine = await addr(h1.ipam, poolId);
    const theirs = await addr(h2.ipam, poolId);
    const r = await h1.ipam.reconcileHost({ pools: [], olderThan: '2026-11-29T11:59:00.000Z' });
    expect(r.releasedPools).toEqual([{ poolId, pool: '10.99.0.0/24' }]);
    const status = (await h2.ipam.status()).pools[0]!;
    expect(status).toMatchObject({ holders: { h2: 1 }, gateway: '10.99.0.1' });
    expect(status.blocks.every((b) => b.owner === 'h2')).toBe(true);
    expect(store.mirrors.leases.keys()).toHaveLength(2); // the gateway and h2's
    expect(mine).not.toBe(theirs);
  });

  it('a pool requested within the grace period is spared though Docker has no network for it yet', async () => {
    const { ipam } = instance('h1');
    clock = new Date('2026-11-29T11:59:30.000Z');
    await ipam.requestPool(net);
    const r = await ipam.reconcileHost({ pools: [], olderThan: '2026-11-29T11:59:00.000Z' });
    expect(r).toEqual({ released: [], releasedPools: [], spared: 1 });
  });
});
