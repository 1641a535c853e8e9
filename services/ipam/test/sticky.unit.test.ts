import { parseCidr } from '@weave/netaddr';
import { leaseKey } from '../src/core/keys';
import type { LeaseRecord } from '../src/core/records';
import { decideKeep, decideReturn, decideStick, decideTakeOver, evictionOrder, returnable, StickyEntry } from '../src/core/sticky';
import type { IpamStore } from '../src/store';
import { memoryStore } from '../src/store-memory';
import { handlersOf } from './handlers';

/** Addresses that stick to a container's own MAC, over the in-memory store with a clock the test steps. */
const T0 = Date.parse('2026-11-29T12:00:00Z');
const HOUR = 3_600_000;
const MAC = '02:42:aa:bb:cc:dd';
const OTHER_MAC = '02:42:aa:bb:cc:ee';
const NET = '10.60.0.0/24';

let clock = T0;
const instance = (host: string, store: IpamStore, o: { keepMs?: number; blockSize?: number }) =>
  handlersOf(host, store, { blockSize: o.blockSize ?? 16, keepMs: o.keepMs ?? HOUR, now: () => new Date(clock) });

beforeEach(() => {
  clock = T0;
});

/** A host with a network on NET, as Docker makes one: the pool, then its gateway. */
async function host(name = 'h1', store = memoryStore(), o: { keepMs?: number; blockSize?: number; subPool?: string } = {}) {
  const h = instance(name, store, o);
  const { poolId } = await h.ipam.requestPool({ addressSpace: 'weave-local', pool: NET, subPool: o.subPool ?? null, v6: false, options: {} });
  await h.ipam.requestAddress({ poolId, address: null, kind: 'gateway' });
  /** A container start: RequestAddress with Docker's MAC, then CreateEndpoint's stickToMac when the MAC is the user's. */
  const start = async (mac: string, own = true, address: string | null = null) => {
    const r = await h.ipam.requestAddress({ poolId, address, kind: 'endpoint', mac });
    if (own) expect(await h.ipam.stickToMac({ address: r.address, mac })).toEqual({ sticky: true, reason: null });
    return r.address.split('/')[0]!;
  };
  const stop = (address: string) => h.ipam.releaseAddress({ poolId, address });
  const lease = async (address: string) => (await store.leases.get(leaseKey(parseCidr(NET), BigInt(ipValue(address)))))?.value ?? null;
  return { ...h, store, poolId, start, stop, lease };
}

const ipValue = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);

describe('an address that sticks to its container\'s own MAC', () => {
  it('is kept when Docker releases it, and given back to the next start with that MAC; others get other addresses meanwhile', async () => {
    const h = await host();
    const a = await h.start(MAC);
    expect(a).toBe('10.60.0.2');
    await h.stop(a);
    expect(await h.lease(a)).toMatchObject({ host: 'h1', kind: 'endpoint', sticky: { mac: MAC, releasedAt: new Date(T0).toISOString() } });
    expect(h.events.map((e) => e.kind)).toContain('address.kept');
    expect(h.events.find((e) => e.kind === 'address.kept')!.data).toEqual({ poolId: h.poolId, address: a, mac: MAC, until: new Date(T0 + HOUR).toISOString() });

    // A container started meanwhile, with a MAC Docker made up, and one with another MAC of its own.
    expect(await h.start('02:42:11:22:33:44', false)).toBe('10.60.0.3');
    expect(await h.start(OTHER_MAC)).toBe('10.60.0.4');
    clock += 10 * 60_000;
    expect(await h.start(MAC.toUpperCase())).toBe(a);
    expect(await h.lease(a)).toMatchObject({ sticky: { mac: MAC }, time: new Date(clock).toISOString() });
    expect((await h.lease(a))!.sticky!.releasedAt).toBeUndefined();
    expect(h.events.filter((e) => e.kind === 'address.returned').map((e) => e.data)).toEqual([{ poolId: h.poolId, address: `${a}/24`, mac: MAC }]);
  });

  it('a MAC Docker made up (no stickToMac) keeps nothing: the address is free at once, as before', async () => {
    const h = await host();
    const a = await h.start('02:42:9f:4c:50:b7', false);
    await h.stop(a);
    expect(await h.lease(a)).toBeNull();
    expect(await h.start('02:42:f5:be:a7:5d', false)).toBe(a);
  });

  it('a repeated ReleaseAddress of a kept address changes nothing', async () => {
    const h = await host();
    const a = await h.start(MAC);
    await h.stop(a);
    const kept = await h.lease(a);
    clock += 1000;
    await h.stop(a);
    expect(await h.lease(a)).toEqual(kept);
    expect(h.events.filter((e) => e.kind === 'address.kept')).toHaveLength(1);
  });

  it('with WEAVE_IPAM_KEEP_MS=0 nothing sticks, and a release frees the address', async () => {
    const h = await host('h1', memoryStore(), { keepMs: 0 });
    const r = await h.ipam.requestAddress({ poolId: h.poolId, address: null, kind: 'endpoint', mac: MAC });
    expect(await h.ipam.stickToMac({ address: r.address, mac: MAC })).toEqual({ sticky: false, reason: expect.stringMatching(/WEAVE_IPAM_KEEP_MS=0/) });
    await h.stop('10.60.0.2');
    expect(await h.lease('10.60.0.2')).toBeNull();
  });

  it('stickToMac for an address no endpoint of this host has (an aux address, another pool) says why not', async () => {
    const h = await host();
    await h.ipam.requestAddress({ poolId: h.poolId, address: '10.60.0.200', kind: 'aux' });
    expect(await h.ipam.stickToMac({ address: '10.60.0.200/24', mac: MAC })).toEqual({ sticky: false, reason: 'no endpoint of this host has that address' });
    expect(await h.ipam.stickToMac({ address: '10.60.0.9/24', mac: MAC })).toEqual({ sticky: false, reason: 'no endpoint of this host has that address' });
    expect(await h.ipam.stickToMac({ address: '10.61.0.9/24', mac: MAC })).toEqual({ sticky: false, reason: 'pool 10.61.0.0/24 is not in use on host h1' });
  });
});

describe('expiry and reconciliation', () => {
  const sweep = (h: Awaited<ReturnType<typeof host>>) =>
    h.ipam.reconcileHost({ pools: [{ subnet: NET, keep: ['10.60.0.1'] }], olderThan: new Date(clock).toISOString() });

  it('reconciliation keeps a kept address Docker does not have, until it has been kept WEAVE_IPAM_KEEP_MS; then it is released', async () => {
    const h = await host();
    const a = await h.start(MAC);
    clock += 5 * 60_000;
    await h.stop(a);
    clock += HOUR - 1;
    expect(await sweep(h)).toEqual({ released: [], releasedPools: [], spared: 0 });
    expect(await h.lease(a)).toMatchObject({ sticky: { mac: MAC } });
    clock += 2;
    expect((await sweep(h)).released).toEqual([{ poolId: h.poolId, address: a, leasedAt: new Date(T0).toISOString() }]);
    expect(await h.lease(a)).toBeNull();
    // The MAC's next start gets what is free, and its address sticks again.
    expect(await h.start(MAC)).toBe(a);
  });

  it('an address given back is a fresh lease: the grace protects it as any allocation in flight', async () => {
    const h = await host();
    const a = await h.start(MAC);
    await h.stop(a);
    clock += 30 * 60_000;
    expect(await h.start(MAC)).toBe(a);
    // Docker has not recorded the endpoint yet: a pass whose grace reaches back before the return spares it.
    const r = await h.ipam.reconcileHost({ pools: [{ subnet: NET, keep: ['10.60.0.1'] }], olderThan: new Date(clock - 60_000).toISOString() });
    expect(r).toEqual({ released: [], releasedPools: [], spared: 1 });
  });

  it('a live endpoint lease Docker does not have is still a leak, sticky or not', async () => {
    const h = await host();
    const a = await h.start(MAC);
    clock += 2 * 60_000;
    expect((await sweep(h)).released.map((l) => l.address)).toEqual([a]);
  });
});

describe('a kept address goes to whoever needs it', () => {
  it('--ip, --aux-address or --gateway naming it take it over; the MAC then gets another address', async () => {
    const h = await host();
    const [a, b] = [await h.start(MAC), await h.start(OTHER_MAC)];
    await h.stop(a);
    await h.stop(b);
    expect(await h.ipam.requestAddress({ poolId: h.poolId, address: a, kind: 'endpoint' })).toEqual({ address: `${a}/24` });
    expect(await h.lease(a)).toEqual(expect.not.objectContaining({ sticky: expect.anything() }));
    expect(await h.ipam.requestAddress({ poolId: h.poolId, address: b, kind: 'aux' })).toEqual({ address: `${b}/24` });
    expect(h.events.filter((e) => e.kind === 'address.released').map((e) => e.data.address)).toEqual([a, b]);
    expect(await h.start(MAC)).toBe('10.60.0.4');
  });

  it('an allocation that finds no other free address in the range takes the one kept longest, this host\'s first', async () => {
    const store = memoryStore();
    // --ip-range 10.60.0.0/29: .1 (the gateway) to .7.
    const h = await host('h1', store, { subPool: '10.60.0.0/29', blockSize: 8 });
    const got = [];
    for (const mac of ['02:42:00:00:00:01', '02:42:00:00:00:02', '02:42:00:00:00:03']) got.push(await h.start(mac));
    for (const mac of ['02:42:00:00:00:04', '02:42:00:00:00:05', '02:42:00:00:00:06']) got.push(await h.start(mac, false));
    expect(got).toEqual(['10.60.0.2', '10.60.0.3', '10.60.0.4', '10.60.0.5', '10.60.0.6', '10.60.0.7']);
    await h.stop('10.60.0.3');
    clock += 1000;
    await h.stop('10.60.0.2');
    // Full but for the two kept: the one kept longer goes first.
    expect(await h.start('02:42:00:00:00:99', false)).toBe('10.60.0.3');
    expect(await h.start('02:42:00:00:00:98', false)).toBe('10.60.0.2');
    await expect(h.start('02:42:00:00:00:97', false)).rejects.toThrow(/no free address in/);
    // Its MAC's next start finds nothing kept: the range is full.
    await expect(h.start('02:42:00:00:00:01')).rejects.toThrow(/no free address in/);
  });
});

describe('one MAC, one address', () => {
  it('no address is given back while an endpoint of this host has the MAC (a second container with it, or a release that never came)', async () => {
    const h = await host();
    const a = await h.start(MAC);
    await h.stop(a);
    const b = await h.start(MAC); // gets a back
    expect(b).toBe(a);
    // A second container with the same MAC while the first runs: never the first's address.
    const c = await h.start(MAC);
    expect(c).not.toBe(a);
    // The latest endpoint with the MAC is the one its address sticks to.
    expect(await h.lease(a)).toEqual(expect.not.objectContaining({ sticky: expect.anything() }));
    expect(await h.lease(c)).toMatchObject({ sticky: { mac: MAC } });
    await h.stop(a);
    expect(await h.lease(a)).toBeNull();
  });

  it('a MAC that sticks to a new address lets go of the one kept for it', async () => {
    const h = await host();
    const a = await h.start(MAC);
    await h.stop(a);
    // The container comes back with --ip: Docker names the address, nothing is given back.
    const b = await h.start(MAC, true, '10.60.0.77');
    expect(b).toBe('10.60.0.77');
    expect(await h.lease(a)).toBeNull();
  });

  it('another host\'s start with the same MAC gets nothing kept on this one', async () => {
    const store = memoryStore();
    const h1 = await host('h1', store);
    const h2 = await host('h2', store);
    const a = await h1.start(MAC);
    await h1.stop(a);
    const b = await h2.start(MAC);
    expect(b).not.toBe(a);
    expect(await h1.start(MAC)).toBe(a);
  });
});

describe('the decisions, alone', () => {
  const live = (o: Partial<LeaseRecord> = {}): LeaseRecord => ({ host: 'h1', kind: 'endpoint', time: new Date(T0).toISOString(), gen: 'g', epoch: 1, ...o });
  const kept = (mac = MAC, at = T0, o: Partial<LeaseRecord> = {}) => live({ sticky: { mac, releasedAt: new Date(at).toISOString() }, ...o });
  const at = new Date(T0 + 5).toISOString();

  it.each([
    ['a sticky endpoint lease of this host is kept', live({ sticky: { mac: MAC } }), 'put', true],
    ['a kept one stays as it is', kept(), 'keep', true],
    ['a lease that sticks to nothing is released as usual', live(), 'keep', false],
    ["another host's lease is not ours to keep", live({ host: 'h2', sticky: { mac: MAC } }), 'keep', false],
    ['a gateway never sticks', live({ kind: 'gateway', sticky: { mac: MAC } }), 'keep', false],
    ['a lease gone meanwhile', null, 'keep', false],
  ])('decideKeep: %s', (_what, cur, change, result) => {
    const d = decideKeep(cur, 'h1', at);
    expect(Object.keys(d.change)[0]).toBe(change);
    expect(d.result).toBe(result);
  });

  it('decideReturn gives back only what is kept for that MAC by this host, in this incarnation of the pool', () => {
    const lease = live({ time: at });
    expect(decideReturn(kept(), 'h1', MAC, lease)).toEqual({ change: { put: { ...lease, sticky: { mac: MAC } } }, result: true });
    for (const cur of [kept(OTHER_MAC), kept(MAC, T0, { host: 'h2' }), kept(MAC, T0, { gen: 'older' }), live({ sticky: { mac: MAC } }), null]) {
      expect(decideReturn(cur, 'h1', MAC, lease).result).toBe(false);
    }
  });

  it('decideTakeOver takes kept and free addresses, never one an endpoint has', () => {
    const lease = live({ kind: 'aux' });
    expect(decideTakeOver(kept(), lease)).toEqual({ change: { put: lease }, result: 'kept' });
    expect(decideTakeOver(null, lease)).toEqual({ change: { put: lease }, result: 'free' });
    expect(decideTakeOver(live({ sticky: { mac: MAC } }), lease).result).toBeNull();
    expect(decideTakeOver(live({ host: 'h2' }), lease).result).toBeNull();
  });

  it('decideStick marks live endpoint leases of this host only', () => {
    expect(decideStick(live(), 'h1', MAC)).toEqual({ change: { put: live({ sticky: { mac: MAC } }) }, result: null });
    expect(decideStick(live({ sticky: { mac: MAC } }), 'h1', MAC)).toEqual({ change: { keep: true }, result: null });
    for (const cur of [kept(), live({ host: 'h2' }), live({ kind: 'aux' }), null]) expect(decideStick(cur, 'h1', MAC).result).toMatch(/no endpoint/);
  });

  const entry = (last: number, value: LeaseRecord): StickyEntry => ({ key: `k.${last}`, address: BigInt(last), value });

  it('returnable: exactly one kept address, and no live endpoint with the MAC', () => {
    const all = () => true;
    expect(returnable([entry(2, kept()), entry(3, kept(OTHER_MAC))], 'h1', MAC, all)?.address).toBe(2n);
    expect(returnable([entry(2, kept()), entry(3, live({ sticky: { mac: MAC } }))], 'h1', MAC, all)).toBeNull();
    expect(returnable([entry(2, kept()), entry(3, kept())], 'h1', MAC, all)).toBeNull();
    expect(returnable([entry(2, kept(MAC, T0, { host: 'h2' }))], 'h1', MAC, all)).toBeNull();
    expect(returnable([entry(2, kept())], 'h1', MAC, (e) => e.address !== 2n)).toBeNull();
  });

  it('evictionOrder: this host\'s kept addresses first, each host\'s by how long they have been kept', () => {
    const order = evictionOrder([entry(2, kept(MAC, T0 + 3)), entry(3, live()), entry(4, kept(MAC, T0, { host: 'h2' })), entry(5, kept(MAC, T0 + 1))], 'h1');
    expect(order.map((e) => e.address)).toEqual([5n, 2n, 4n]);
  });
});
