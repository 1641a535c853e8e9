import { ConflictError, ExhaustedError, InvalidRequestError, NotFoundError } from '@weave/errors';
import type { Ipam } from '../src/ipam';
import type { IpamStore, KeySet, Table } from '../src/store';
import { memoryStore } from '../src/store-memory';
import { handlersOf } from './handlers';

/** The handlers over the in-memory store: no nats-server, so every interleaving and crash is cheap. */
const instance = (host: string, store: IpamStore, blockSize = 16, now?: () => Date) => handlersOf(host, store, { blockSize, ...(now ? { now } : {}) });

const pool = (p: string, subPool: string | null = null) => ({ addressSpace: 'weave-local', pool: p, subPool, v6: p.includes(':'), options: {} });
const dyn = (poolId: string) => ({ poolId, address: null, kind: 'endpoint' as const });
const gw = (poolId: string, address: string | null = null) => ({ poolId, address, kind: 'gateway' as const });
const keys = async (m: KeySet) => m.keys().sort();
const dump = async (s: IpamStore) => ({ pools: await keys(s.mirrors.pools), blocks: await keys(s.mirrors.blocks), leases: await keys(s.mirrors.leases) });

describe('gateways and aux addresses belong to the network on every host', () => {
  it('the first host chooses the gateway, the others get the same one, and it lives while any host holds the pool', async () => {
    const store = memoryStore();
    const [h1, h2] = [instance('h1', store).ipam, instance('h2', store).ipam];
    const { poolId } = await h1.requestPool(pool('10.99.0.0/24'));
    expect(await h1.requestAddress(gw(poolId))).toEqual({ address: '10.99.0.1/24' });
    await h2.requestPool(pool('10.99.0.0/24'));
    expect(await h2.requestAddress(gw(poolId))).toEqual({ address: '10.99.0.1/24' });
    expect(await h2.requestAddress(gw(poolId, '10.99.0.1'))).toEqual({ address: '10.99.0.1/24' });
    await expect(h2.requestAddress(gw(poolId, '10.99.0.254'))).rejects.toThrow(/already has gateway 10.99.0.1 .*ask for --gateway 10.99.0.1 or none/);
    await expect(h2.requestAddress({ poolId, address: '10.99.0.1', kind: 'endpoint' })).rejects.toThrow(new ConflictError('address 10.99.0.1 is already in use in 10.99.0.0/24'));

    await h1.releaseAddress({ poolId, address: '10.99.0.1' }); // h2 still has the network
    await h1.releasePool({ poolId });
    expect((await h2.status()).pools[0]).toMatchObject({ gateway: '10.99.0.1', holders: { h2: 1 } });
    await expect(h2.requestAddress({ poolId, address: '10.99.0.1', kind: 'endpoint' })).rejects.toThrow(ConflictError);

    await h2.releaseAddress({ poolId, address: '10.99.0.1' });
    expect((await h2.status()).pools[0]).toMatchObject({ gateway: null });
    await h2.releasePool({ poolId });
    expect(await dump(store)).toEqual({ pools: [], blocks: [], leases: [] });
  });

  it('an explicit --gateway is what later hosts get', async () => {
    const store = memoryStore();
    const [h1, h2] = [instance('h1', store).ipam, instance('h2', store).ipam];
    const { poolId } = await h1.requestPool(pool('10.98.0.0/24', '10.98.0.128/25'));
    expect(await h1.requestAddress(gw(poolId, '10.98.0.254'))).toEqual({ address: '10.98.0.254/24' });
    await h2.requestPool(pool('10.98.0.0/24', '10.98.0.128/25'));
    expect(await h2.requestAddress(gw(poolId))).toEqual({ address: '10.98.0.254/24' });
    await expect(h1.requestAddress(gw(poolId, '10.98.1.1'))).rejects.toThrow(ConflictError);
    await expect(h1.requestAddress(gw(poolId, '10.98.0.0'))).rejects.toThrow(ConflictError);
  });

  it('a gateway leased but not yet recorded (a crash in between) is adopted', async () => {
    const store = memoryStore();
    const h1 = instance('h1', store).ipam;
    const { poolId } = await h1.requestPool(pool('10.97.0.0/24'));
    await h1.requestAddress(gw(poolId));
    await store.pools.mutate('v4-0a610000-24', (cur) => ({ change: { put: { ...cur!, gateway: null } }, result: null }));
    expect(await h1.requestAddress(gw(poolId))).toEqual({ address: '10.97.0.1/24' });
    expect((await h1.status()).pools[0]!.gateway).toBe('10.97.0.1');
  });

  it('aux addresses are shared by kind, never with an endpoint', async () => {
    const store = memoryStore();
    const [h1, h2] = [instance('h1', store).ipam, instance('h2', store).ipam];
    const { poolId } = await h1.requestPool(pool('10.96.0.0/24'));
    await h2.requestPool(pool('10.96.0.0/24'));
    expect(await h1.requestAddress({ poolId, address: '10.96.0.200', kind: 'aux' })).toEqual({ address: '10.96.0.200/24' });
    expect(await h2.requestAddress({ poolId, address: '10.96.0.200', kind: 'aux' })).toEqual({ address: '10.96.0.200/24' });
    await expect(h2.requestAddress({ poolId, address: '10.96.0.200', kind: 'endpoint' })).rejects.toThrow(/10.96.0.200 is already in use/);
    await expect(h2.requestAddress({ poolId, address: null, kind: 'aux' })).rejects.toThrow(InvalidRequestError);
  });
});

describe('holders', () => {
  it('a host that does not hold the pool gets no address from it', async () => {
    const store = memoryStore();
    const [h1, h2] = [instance('h1', store).ipam, instance('h2', store).ipam];
    const { poolId } = await h1.requestPool(pool('10.95.0.0/24'));
    await expect(h2.requestAddress(dyn(poolId))).rejects.toThrow(new NotFoundError('pool weave:10.95.0.0/24 is not in use on host h2'));
  });

  it('a host leaving gives back its blocks and stray endpoint leases, and keeps the others\' ones', async () => {
    const store = memoryStore();
    const [h1, h2] = [instance('h1', store).ipam, instance('h2', store).ipam];
    const { poolId } = await h1.requestPool(pool('10.94.0.0/24'));
    await h2.requestPool(pool('10.94.0.0/24'));
    await h1.requestAddress(gw(poolId));
    const mine = await h1.requestAddress(dyn(poolId)); // never released: a leak
    const theirs = await h2.requestAddress(dyn(poolId));
    await h1.releasePool({ poolId });
    const s = (await h2.status()).pools[0]!;
    expect(s.blocks.map((b) => b.owner)).toEqual(['h2']);
    expect(await keys(store.mirrors.leases)).toEqual(['v4-0a5e0000-24.0a5e0001', `v4-0a5e0000-24.${hexOf(theirs.address)}`]);
    expect(mine.address).not.toBe(theirs.address);
    await h1.releasePool({ poolId }); // repeated: nothing more to do
    expect((await h2.status()).pools[0]!.holders).toEqual({ h2: 1 });
  });

  it('finishes a removal that its last holder left half-done, before creating the pool again', async () => {
    const store = memoryStore();
    const h1 = instance('h1', store).ipam;
    const { poolId } = await h1.requestPool(pool('10.93.0.0/24'));
    await h1.requestAddress(dyn(poolId));
    await store.pools.mutate('v4-0a5d0000-24', (cur) => ({ change: { put: { ...cur!, holders: {} } }, result: null })); // died right after leaving
    const h2 = instance('h2', store).ipam;
    await h2.requestPool(pool('10.93.0.0/24'));
    expect(await keys(store.mirrors.leases)).toEqual([]);
    expect(await keys(store.mirrors.blocks)).toEqual([]);
    expect((await h2.requestAddress(dyn(poolId))).address).toBe('10.93.0.1/24');
  });
});

describe("a RequestPool for a subnet this host holds, decided by Docker's list of its networks", () => {
  const FOO = { id: 'f'.repeat(64), name: 'weave:foo', subnets: ['10.91.0.0/24'] };
  /** Docker's list as plugin-api sends it; the instances' clock says 12:00:00, so references taken then are older than 12:00:01. */
  const docker = (...networks: Array<typeof FOO>) => ({ networks, olderThan: '2026-11-29T12:00:01.000Z' });
  const inFlight = (...networks: Array<typeof FOO>) => ({ networks, olderThan: '2026-11-29T12:00:00.000Z' });

  it('a create asked again after its reply was lost gets the same PoolID and still one reference, which its one ReleasePool balances', async () => {
    const store = memoryStore();
    const { ipam: h1, events } = instance('h1', store);
    const { poolId } = await h1.requestPool(pool('10.91.0.0/24')); // its reply lost: Docker made no network
    await h1.requestAddress(gw(poolId));
    expect(await h1.requestPool({ ...pool('10.91.0.0/24'), docker: docker() })).toEqual({ poolId, pool: '10.91.0.0/24', data: {} });
    expect((await h1.status()).pools).toEqual([expect.objectContaining({ poolId, holders: { h1: 1 }, gateway: '10.91.0.1' })]);
    expect(events.filter((e) => e.kind === 'pool.requested').map((e) => e.data.holders)).toEqual([1, 1]);
    expect(await h1.requestAddress(gw(poolId))).toEqual({ address: '10.91.0.1/24' });
    await h1.requestAddress(dyn(poolId));

    await h1.releaseAddress({ poolId, address: '10.91.0.2' });
    await h1.releaseAddress({ poolId, address: '10.91.0.1' });
    await h1.releasePool({ poolId, docker: docker() }); // `docker network rm`: Docker no longer lists it
    expect(await dump(store)).toEqual({ pools: [], blocks: [], leases: [] });
  });

  it('taken over, the reference is younger again: reconciliation spares it while Docker stores the network', async () => {
    const store = memoryStore();
    const h1 = instance('h1', store, 16, () => new Date('2026-11-29T12:00:00Z')).ipam;
    await h1.requestPool(pool('10.91.0.0/24'));
    const later = instance('h1', store, 16, () => new Date('2026-11-29T12:10:00Z')).ipam;
    await later.requestPool({ ...pool('10.91.0.0/24'), docker: { networks: [], olderThan: '2026-11-29T12:09:00.000Z' } });
    const swept = await later.reconcileHost({ pools: [], olderThan: '2026-11-29T12:09:00.000Z' });
    expect(swept).toMatchObject({ releasedPools: [], spared: 1 });
  });

  it('a second network on the subnet is refused and named, and a stray ReleasePool after it keeps the first network\'s reference', async () => {
    const store = memoryStore();
    const h1 = instance('h1', store).ipam;
    const { poolId } = await h1.requestPool(pool('10.91.0.0/24'));
    await expect(h1.requestPool({ ...pool('10.91.0.0/24'), docker: docker(FOO) })).rejects.toThrow(
      new ConflictError('subnet 10.91.0.0/24 is already used by network weave:foo (ffffffffffff) on this host (h1)'),
    );
    await expect(h1.requestPool({ ...pool('10.91.0.0/25'), docker: docker(FOO) })).rejects.toThrow(/overlaps 10.91.0.0\/24, which a weave network already uses \(network weave:foo \(ffffffffffff\) on this host\)/);
    await h1.releasePool({ poolId, docker: docker(FOO) });
    expect((await h1.status()).pools).toEqual([expect.objectContaining({ poolId, holders: { h1: 1 } })]);
    expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.91.0.1/24' });
  });

  it('a reference that may belong to a create in flight is not shared: refused, saying when to try again', async () => {
    const store = memoryStore();
    const h1 = instance('h1', store).ipam;
    await h1.requestPool(pool('10.91.0.0/24'));
    await expect(h1.requestPool({ ...pool('10.91.0.0/24'), docker: inFlight() })).rejects.toThrow(/taken moments ago .*try again in 1 s/);
    expect((await h1.status()).pools[0]!.holders).toEqual({ h1: 1 });
  });

  it('a leftover of another ip-range goes, with its blocks and leases, and the request gets the pool it asked for', async () => {
    const store = memoryStore();
    const h1 = instance('h1', store).ipam;
    const old = await h1.requestPool(pool('10.91.0.0/24', '10.91.0.128/25'));
    await h1.requestAddress(gw(old.poolId));
    await h1.requestAddress(dyn(old.poolId));
    const { poolId } = await h1.requestPool({ ...pool('10.91.0.0/24'), docker: docker() });
    expect(poolId).toBe('weave:10.91.0.0/24');
    expect((await h1.status()).pools).toEqual([expect.objectContaining({ poolId, subPool: null, holders: { h1: 1 }, gateway: null, blocks: [] })]);
    expect(await dump(store)).toEqual({ pools: ['v4-0a5b0000-24'], blocks: [], leases: [] });
  });

  it('a leftover on a pool other hosts hold too: taken over, theirs untouched', async () => {
    const store = memoryStore();
    const [h1, h2] = [instance('h1', store).ipam, instance('h2', store).ipam];
    const { poolId } = await h1.requestPool(pool('10.91.0.0/24'));
    await h2.requestPool(pool('10.91.0.0/24'));
    expect((await h1.requestPool({ ...pool('10.91.0.0/24'), docker: docker() })).poolId).toBe(poolId);
    expect((await h1.status()).pools[0]!.holders).toEqual({ h1: 1, h2: 1 });
    await h1.releasePool({ poolId, docker: docker() });
    expect((await h2.status()).pools[0]!.holders).toEqual({ h2: 1 });
  });
});

describe('events', () => {
  it('every state change is published, and nothing else', async () => {
    const store = memoryStore();
    const { ipam, events } = instance('h1', store, 4);
    const { poolId } = await ipam.requestPool(pool('10.92.0.0/28'));
    await ipam.requestAddress(gw(poolId));
    await ipam.requestAddress(dyn(poolId));
    await ipam.releaseAddress({ poolId, address: '10.92.0.2' });
    await ipam.releaseAddress({ poolId, address: '10.92.0.2' });
    await ipam.releaseAddress({ poolId, address: '10.92.0.1' });
    await ipam.releasePool({ poolId });
    expect(events).toEqual([
      { kind: 'pool.requested', data: { poolId, pool: '10.92.0.0/28', holders: 1 } },
      { kind: 'address.allocated', data: { poolId, address: '10.92.0.1/28', kind: 'gateway' } },
      { kind: 'block.claimed', data: { poolId, block: '10.92.0.0/30' } },
      { kind: 'address.allocated', data: { poolId, address: '10.92.0.2/28', kind: 'endpoint' } },
      { kind: 'address.released', data: { poolId, address: '10.92.0.2' } },
      { kind: 'address.released', data: { poolId, address: '10.92.0.1' } },
      { kind: 'block.released', data: { poolId, block: '10.92.0.0/30' } },
      { kind: 'pool.released', data: { poolId, pool: '10.92.0.0/28', holders: 0 } },
    ]);
  });
});

describe('a process killed at any point', () => {
  class Crash extends Error {}

  const CRASH_POINTS = 60;
  let writes = 0;

  /** The store, with the process dying right after its `n`-th write lands. */
  function dyingAfter(store: IpamStore, n: number): IpamStore {
    writes = 0;
    const wrap = <T>(t: Table<T>): Table<T> => {
      const landed = async <R>(r: Promise<R>): Promise<R> => {
        const v = await r;
        if (++writes === n) throw new Crash(`killed after write ${n}`);
        return v;
      };
      return {
        name: t.name,
        get: (k) => t.get(k),
        create: (k, v) => landed(t.create(k, v)),
        mutate: (k, d) => landed(t.mutate(k, d)),
        deleteAt: (k, r) => landed(t.deleteAt(k, r)),
      };
    };
    return { ...store, pools: wrap(store.pools), blocks: wrap(store.blocks), leases: wrap(store.leases) };
  }

  /** What Docker does with one network, remembering which addresses it is using. */
  async function lifecycle(ipam: Ipam, live: Set<string>, state: { poolId?: string }) {
    const { poolId } = await ipam.requestPool(pool('10.91.0.0/28'));
    state.poolId = poolId;
    live.add((await ipam.requestAddress(gw(poolId))).address);
    for (let i = 0; i < 6; i++) live.add((await ipam.requestAddress(dyn(poolId))).address);
    for (const a of ['10.91.0.3/28', '10.91.0.6/28']) {
      live.delete(a); // Docker forgets the address whatever the reply: teardown errors are only logged
      await ipam.releaseAddress({ poolId, address: a.split('/')[0]! });
    }
    for (let i = 0; i < 3; i++) live.add((await ipam.requestAddress(dyn(poolId))).address);
    for (const a of [...live]) {
      live.delete(a);
      await ipam.releaseAddress({ poolId, address: a.split('/')[0]! });
    }
    await ipam.releasePool({ poolId });
    state.poolId = undefined;
  }

  it('the crash points below cover every write of the lifecycle', async () => {
    await lifecycle(instance('h1', dyingAfter(memoryStore(), Infinity), 4).ipam, new Set(), {});
    expect(writes).toBeGreaterThan(20);
    expect(writes).toBeLessThan(CRASH_POINTS);
  });

  it.each(Array.from({ length: CRASH_POINTS }, (_, i) => i + 1))('after write %i, the restarted service never hands out a live address and can clean up', async (n) => {
    const store = memoryStore();
    const live = new Set<string>();
    const state: { poolId?: string } = {};
    const crashed = await lifecycle(instance('h1', dyingAfter(store, n), 4).ipam, live, state).then(
      () => false,
      (e: unknown) => {
        if (!(e instanceof Crash)) throw e;
        return true;
      },
    );
    const restarted = instance('h1', store, 4).ipam;
    if (state.poolId) {
      // Fill the range: nothing still in use may come back.
      // (NotFound: it died inside releasePool, after this host let go of the pool.)
      for (;;) {
        const r = await restarted.requestAddress(dyn(state.poolId)).catch((e: unknown) => e);
        if (r instanceof ExhaustedError || r instanceof NotFoundError) break;
        if (r instanceof Error) throw r;
        const { address } = r as { address: string };
        expect(live.has(address)).toBe(false);
        live.add(address);
      }
    }
    if (crashed) {
      // A repeated release (or, for a pool whose id never reached Docker, the reconciliation to
      // come) finishes what is left; NotFound when the pool was already gone.
      await restarted.releasePool({ poolId: 'weave:10.91.0.0/28' }).catch((e: unknown) => expect(e).toBeInstanceOf(NotFoundError));
    }
    expect(await dump(store)).toEqual({ pools: [], blocks: [], leases: [] });
  });
});

function hexOf(cidrAddress: string): string {
  return cidrAddress
    .split('/')[0]!
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('');
}
