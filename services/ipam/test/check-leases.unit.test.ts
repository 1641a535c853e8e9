import { ConflictError, UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { parseCidr, parseIp } from '@weave/netaddr';
import { holdingOf } from '../src/core/holdings';
import { leaseKey, poolKey } from '../src/core/keys';
import type { LeaseRecord, PoolRecord } from '../src/core/records';
import { LeaseCheck } from '../src/leases-check';
import { memoryStore } from '../src/store-memory';

/**
 * checkLeases: which of the addresses this host's containers use it still holds, after a reclaim
 * gave some of them to other hosts; and the ones nobody holds, leased again while it is live.
 */
const lease = (host: string, kind: LeaseRecord['kind'] = 'endpoint', epoch = 2): LeaseRecord => ({ host, kind, time: '2026-11-29T12:00:00.000Z', gen: 'g', epoch });

describe('holdingOf', () => {
  it.each([
    ['no lease', undefined, { state: 'free' }],
    ["this host's endpoint lease", lease('h1'), { state: 'held' }],
    ["another host's endpoint lease", lease('h2'), { state: 'taken', by: 'h2' }],
    ["the network's gateway, whoever leased it", lease('h1', 'gateway'), { state: 'taken', by: 'h1' }],
    ['an aux address of another host', lease('h2', 'aux'), { state: 'taken', by: 'h2' }],
  ])('%s', (_what, l, expected) => {
    expect(holdingOf(l, 'h1')).toEqual(expected);
  });
});

describe('LeaseCheck', () => {
  const SUBNET = '10.9.0.0/24';
  const pool = parseCidr(SUBNET);
  const record: PoolRecord = { poolId: `weave:${SUBNET}`, pool: SUBNET, subPool: null, v6: false, gateway: '10.9.0.1', blockSize: 16, gen: 'g', holders: { h1: 1, h2: 1 } };
  const key = (a: string) => leaseKey(pool, parseIp(a).value);

  async function setup(o: { live?: boolean; holders?: PoolRecord['holders'] } = {}) {
    const store = memoryStore();
    await store.pools.create(poolKey(pool), { ...record, holders: o.holders ?? record.holders });
    await store.leases.create(key('10.9.0.2'), lease('h1'));
    await store.leases.create(key('10.9.0.3'), lease('h2'));
    await store.leases.create(key('10.9.0.1'), lease('h2', 'gateway'));
    const asked: string[] = [];
    const check = new LeaseCheck({
      host: 'h1',
      store,
      log: silentLogger(),
      membership: { epoch: () => 2, assertLive: () => { if (o.live === false) throw new UnavailableError('ipam on h1 allocates nothing now: its record was reclaimed'); } },
      // As RequestAddress with --ip does it: create-if-absent, a conflict when somebody has it.
      lease: async (poolId, address) => {
        asked.push(`${poolId} ${address}`);
        if ((await store.leases.create(key(address), lease('h1'))) === null) throw new ConflictError(`address ${address} is already in use`);
      },
    });
    return { store, check, asked };
  }

  it('says held, taken (by whom) or adopted for each address of the pool, and leaves other subnets alone', async () => {
    const t = await setup();
    const r = await t.check.check({ pools: [{ subnet: SUBNET, addresses: ['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.1', '10.8.0.7', 'fd00::2'] }] });
    expect(r.addresses).toEqual([
      { subnet: SUBNET, address: '10.9.0.2', state: 'held', by: null, adopted: false },
      { subnet: SUBNET, address: '10.9.0.3', state: 'taken', by: 'h2', adopted: false },
      { subnet: SUBNET, address: '10.9.0.4', state: 'held', by: null, adopted: true },
      { subnet: SUBNET, address: '10.9.0.1', state: 'taken', by: 'h2', adopted: false },
    ]);
    expect(t.asked).toEqual([`weave:${SUBNET} 10.9.0.4`]);
    expect((await t.store.leases.get(key('10.9.0.4')))?.value).toMatchObject({ host: 'h1', kind: 'endpoint', epoch: 2 });
    // Asked again, nothing more is leased.
    await t.check.check({ pools: [{ subnet: SUBNET, addresses: ['10.9.0.4'] }] });
    expect(t.asked).toHaveLength(1);
  });

  it('a fenced host leases nothing: a free address stays free until it has registered again', async () => {
    const t = await setup({ live: false });
    const r = await t.check.check({ pools: [{ subnet: SUBNET, addresses: ['10.9.0.3', '10.9.0.4'] }] });
    expect(r.addresses.map((a) => [a.address, a.state, a.by])).toEqual([['10.9.0.3', 'taken', 'h2'], ['10.9.0.4', 'free', null]]);
    expect(t.asked).toEqual([]);
  });

  it('a pool this host no longer holds is not leased from', async () => {
    const t = await setup({ holders: { h2: 1 } });
    const r = await t.check.check({ pools: [{ subnet: SUBNET, addresses: ['10.9.0.4'] }] });
    expect(r.addresses[0]).toMatchObject({ state: 'free', adopted: false });
    expect(t.asked).toEqual([]);
  });

  it('an address another host leases between the look and the lease is taken, not adopted', async () => {
    const t = await setup();
    // The lease call finds it created by h2 meanwhile.
    const racing = new LeaseCheck({
      host: 'h1',
      store: t.store,
      log: silentLogger(),
      membership: { epoch: () => 2, assertLive: () => undefined },
      lease: async (_poolId, address) => {
        await t.store.leases.create(key(address), lease('h2'));
        throw new ConflictError(`address ${address} is already in use`);
      },
    });
    const r = await racing.check({ pools: [{ subnet: SUBNET, addresses: ['10.9.0.5'] }] });
    expect(r.addresses[0]).toEqual({ subnet: SUBNET, address: '10.9.0.5', state: 'taken', by: 'h2', adopted: false });
  });
});
