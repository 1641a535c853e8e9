import { UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { parseCidr } from '@weave/netaddr';
import { ALWAYS_LIVE, IpamDeps } from '../src/deps';
import { StaticRoutes } from '../src/host-routes';
import { Ipam } from '../src/ipam';
import type { IpamStore, KeySet, Table } from '../src/store';
import { memoryStore } from '../src/store-memory';

/**
 * Requests whose caller gave up (plugin-api's RPC timeout) before they finished. A KV call that
 * stalls for a minute cannot be caused on demand, so the store here moves the injected clock on
 * by a minute when the next write (or read) lands, once armed: the request then finishes past
 * its deadline.
 */
const START = Date.parse('2026-11-29T12:00:00Z');
const MINUTE = 60_000;

function setup() {
  const clock: Clock = { t: START, stall: null };
  const store = stalling(memoryStore(), clock);
  let ids = 0;
  const instance = (host: string) => {
    const deps: IpamDeps = {
      host,
      store,
      routes: new StaticRoutes(),
      events: { publish: () => undefined },
      log: silentLogger(),
      config: { defaultRange: parseCidr('10.32.0.0/12'), defaultPrefix: 24, blockSize: 16 },
      membership: ALWAYS_LIVE,
      now: () => new Date(clock.t),
      newId: () => `gen-${++ids}`,
      randomBytes: (n: number) => new Uint8Array(n).fill(0x5a),
    };
    return new Ipam(deps);
  };
  /** The caller's deadline: ten seconds from now, as plugin-api sets it. */
  const inTime = () => ({ deadline: clock.t + 10_000 });
  return { clock, store, instance, inTime };
}

type Clock = { t: number; stall: 'write' | 'read' | null };

function stalling(store: IpamStore, clock: Clock): IpamStore {
  const landed = async <R>(kind: 'write' | 'read', r: Promise<R>): Promise<R> => {
    const v = await r;
    if (clock.stall === kind) {
      clock.stall = null;
      clock.t += MINUTE;
    }
    return v;
  };
  const wrap = <T>(t: Table<T>): Table<T> => ({
    name: t.name,
    get: (k) => landed('read', t.get(k)),
    create: (k, v) => landed('write', t.create(k, v)),
    mutate: (k, d) => landed('write', t.mutate(k, d)),
    deleteAt: (k, r) => t.deleteAt(k, r),
  });
  return { ...store, pools: wrap(store.pools), blocks: wrap(store.blocks), leases: wrap(store.leases) };
}

const pool = (p: string | null) => ({ addressSpace: 'weave-local', pool: p, subPool: null, v6: false, options: {} });
const dyn = (poolId: string) => ({ poolId, address: null, kind: 'endpoint' as const });
const gw = (poolId: string) => ({ poolId, address: null, kind: 'gateway' as const });
const gaveUp = /finished after its caller gave up waiting at .*; what it took was given back, so a retry starts clean/;
const rows = async (m: KeySet) => m.keys().sort();

describe('a request that finishes after its caller gave up', () => {
  it('RequestPool that created the pool removes it again, and Docker\'s retry gets it', async () => {
    const { clock, store, instance, inTime } = setup();
    const h1 = instance('h1');
    clock.stall = 'write';
    const err = await h1.requestPool(pool('10.50.0.0/24'), inTime()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(new RegExp(`^RequestPool for 10.50.0.0/24 ${gaveUp.source}`));
    expect(await rows(store.mirrors.pools)).toEqual([]);
    // Without the undo, this is "subnet … already used by another network on this host", for ever.
    expect(await h1.requestPool(pool('10.50.0.0/24'), inTime())).toMatchObject({ poolId: 'weave:10.50.0.0/24' });
  });

  it('RequestPool that joined a pool drops only this host\'s reference', async () => {
    const { clock, store, instance, inTime } = setup();
    const [h1, h2] = [instance('h1'), instance('h2')];
    const { poolId } = await h2.requestPool(pool('10.51.0.0/24'), inTime());
    await h2.requestAddress(gw(poolId), inTime());
    clock.stall = 'write';
    await expect(h1.requestPool(pool('10.51.0.0/24'), inTime())).rejects.toThrow(gaveUp);
    expect((await store.pools.get('v4-0a330000-24'))?.value).toMatchObject({ holders: { h2: 1 }, gateway: '10.51.0.1' });
    await h1.requestPool(pool('10.51.0.0/24'), inTime());
    expect((await store.pools.get('v4-0a330000-24'))?.value.holders).toEqual({ h1: 1, h2: 1 });
  });

  it('RequestPool for a default subnet gives the subnet back', async () => {
    const { clock, store, instance, inTime } = setup();
    const h1 = instance('h1');
    clock.stall = 'write';
    await expect(h1.requestPool(pool(null), inTime())).rejects.toThrow(/^RequestPool for a default subnet finished after its caller gave up/);
    expect(await rows(store.mirrors.pools)).toEqual([]);
    expect((await h1.requestPool(pool(null), inTime())).pool).toBe('10.32.0.0/24');
  });

  it('RequestAddress releases the lease it made, so the retry gets the same address', async () => {
    const { clock, store, instance, inTime } = setup();
    const h1 = instance('h1');
    const { poolId } = await h1.requestPool(pool('10.52.0.0/24'), inTime());
    await h1.requestAddress(gw(poolId), inTime());
    const leasesBefore = await rows(store.mirrors.leases);
    clock.stall = 'write';
    await expect(h1.requestAddress(dyn(poolId), inTime())).rejects.toThrow(/^RequestAddress \(endpoint\) in weave:10.52.0.0\/24 finished after/);
    expect(await rows(store.mirrors.leases)).toEqual(leasesBefore);
    expect(await h1.requestAddress(dyn(poolId), inTime())).toEqual({ address: '10.52.0.2/24' });
  });

  it('a gateway it chose is given back; one another host chose stays', async () => {
    const { clock, store, instance, inTime } = setup();
    const [h1, h2] = [instance('h1'), instance('h2')];
    const { poolId } = await h1.requestPool(pool('10.53.0.0/24'), inTime());
    clock.stall = 'write';
    await expect(h1.requestAddress(gw(poolId), inTime())).rejects.toThrow(gaveUp);
    expect(await rows(store.mirrors.leases)).toEqual([]);
    expect((await store.pools.get('v4-0a350000-24'))?.value.gateway).toBeNull();

    expect(await h1.requestAddress(gw(poolId), inTime())).toEqual({ address: '10.53.0.1/24' });
    await h2.requestPool(pool('10.53.0.0/24'), inTime());
    // h2 only looks the gateway up (no write): the stall is in that read.
    clock.stall = 'read';
    await expect(h2.requestAddress(gw(poolId), inTime())).rejects.toThrow(gaveUp);
    expect((await store.pools.get('v4-0a350000-24'))?.value.gateway).toBe('10.53.0.1');
    expect(await rows(store.mirrors.leases)).toEqual(['v4-0a350000-24.0a350001']);
  });

  it('a request already past its deadline when its turn comes does nothing', async () => {
    const { clock, store, instance } = setup();
    const h1 = instance('h1');
    await expect(h1.requestPool(pool('10.54.0.0/24'), { deadline: clock.t - 1 })).rejects.toThrow(/^RequestPool for 10.54.0.0\/24: its caller gave up waiting at .*before its turn came; nothing was done/);
    // Too close to the deadline for the reply to arrive in time counts as past it.
    await expect(h1.requestPool(pool('10.54.0.0/24'), { deadline: clock.t + 50 })).rejects.toThrow(/before its turn came/);
    expect(await rows(store.mirrors.pools)).toEqual([]);
  });

  it('a caller that sent no deadline gets its answer however long it took', async () => {
    const { clock, instance } = setup();
    const h1 = instance('h1');
    clock.stall = 'write';
    const { poolId } = await h1.requestPool(pool('10.55.0.0/24'), { deadline: null });
    clock.stall = 'write';
    expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.55.0.1/24' });
  });
});
