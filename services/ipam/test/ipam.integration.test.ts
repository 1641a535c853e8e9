import { jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { kvGet, kvKeys, openBucket, rpcClient, subscribeEvents } from '@weave/bus';
import { Buckets, EventEnvelope, ipamRpc, RpcHeaders, Subjects } from '@weave/contracts';
import { ConflictError, ExhaustedError, InvalidRequestError, NotFoundError, UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { contains, parseCidr, parseIpInCidr } from '@weave/netaddr';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';
import { z } from 'zod';
import { StaticRoutes } from '../src/host-routes';
import { startIpam } from '../src/service';
import { children, IpamStore, openIpamStore, Table } from '../src/store';

/**
 * Several IPAM hosts on one real nats-server, each with its own connection, called over NATS
 * the way plugin-api calls them. A fresh server per test keeps the buckets' contents exact.
 */
// Each test takes well under a second; the margin is for a machine busy with other suites.
jest.setTimeout(20_000);

let server: NatsServer;
let client: NatsConnection;
const running: Array<{ stop: () => Promise<void>; nc: NatsConnection }> = [];

beforeEach(async () => {
  server = await startNatsServer();
  client = await connect({ servers: server.url });
});
afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.stop().catch(() => undefined);
    await r.nc.close().catch(() => undefined);
  }
  await client?.close().catch(() => undefined);
  await server?.stop();
});

interface HostOptions {
  /** The store over this host's connection; the KV buckets by default. */
  store?: (nc: NatsConnection) => Promise<IpamStore>;
  now?: () => Date;
}

async function host(name: string, routes = new StaticRoutes(), o: HostOptions = {}) {
  const nc = await connect({ servers: server.url });
  const s = await startIpam({
    nc,
    host: name,
    log: silentLogger(),
    routes,
    config: { defaultRange: parseCidr('10.32.0.0/12'), defaultPrefix: 24, blockSize: 16 },
    replicas: 1,
    ...(o.store ? { store: await o.store(nc) } : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  const entry = { stop: s.stop, nc };
  running.push(entry);
  const kill = async () => {
    running.splice(running.indexOf(entry), 1);
    await s.stop();
    await nc.close();
  };
  return Object.assign(rpcClient(client, name, ipamRpc), { kill });
}

const pool = (p: string | null, subPool: string | null = null, v6 = false) => ({ addressSpace: 'weave-local', pool: p, subPool, v6, options: {} });
const dyn = (poolId: string) => ({ poolId, address: null, kind: 'endpoint' as const });
const addr = (poolId: string, address: string, kind: 'endpoint' | 'gateway' | 'aux' = 'endpoint') => ({ poolId, address, kind });
const bare = (a: { address: string }) => a.address.split('/')[0]!;
const keysOf = async (bucket: string, filter = '>') => (await kvKeys(await openBucket(client, bucket), filter)).sort();
const allKeys = async () => ({ pools: await keysOf(Buckets.ipamPools), blocks: await keysOf(Buckets.ipamBlocks), leases: await keysOf(Buckets.ipamLeases) });

test('200 concurrent requests split across two hosts get 200 distinct addresses, each from its own host\'s blocks', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool(pool('10.60.0.0/23'));
  await h2.requestPool(pool('10.60.0.0/23'));
  const asked = Array.from({ length: 200 }, (_, i) => (i % 2 ? 'h1' : 'h2'));
  const got = await Promise.all(asked.map((h) => (h === 'h1' ? h1 : h2).requestAddress(dyn(poolId))));
  expect(new Set(got.map((g) => g.address)).size).toBe(200);
  expect(got.every((g) => g.address.endsWith('/23'))).toBe(true);

  const { blocks } = (await h1.status({})).pools[0]!;
  expect(new Set(blocks.map((b) => b.block)).size).toBe(blocks.length);
  const ownerOf = (a: string) => blocks.find((b) => contains(parseCidr(b.block), parseIpInCidr(a).ip))?.owner;
  expect(got.map((g) => ownerOf(g.address))).toEqual(asked);
  expect(blocks.reduce((n, b) => n + b.used, 0)).toBe(200);
});

test('a static address is unique mesh-wide, also inside another host\'s block, and the error says so', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool(pool('10.99.0.0/24'));
  await h2.requestPool(pool('10.99.0.0/24'));
  expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.99.0.1/24' }); // h1 now owns 10.99.0.0/28
  expect(await h2.requestAddress(addr(poolId, '10.99.0.2'))).toEqual({ address: '10.99.0.2/24' });
  expect(await h2.requestAddress(addr(poolId, '10.99.0.50'))).toEqual({ address: '10.99.0.50/24' });
  const clash = await h1.requestAddress(addr(poolId, '10.99.0.50')).catch((e: unknown) => e);
  expect(clash).toBeInstanceOf(ConflictError);
  expect((clash as Error).message).toBe('address 10.99.0.50 is already in use in 10.99.0.0/24');
  // h1's next dynamic address skips the one h2 took in h1's block.
  expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.99.0.3/24' });
  await expect(h1.requestAddress(addr(poolId, '10.98.0.9'))).rejects.toThrow(new InvalidRequestError('address 10.98.0.9 is not in pool 10.99.0.0/24'));
  await expect(h1.requestAddress(addr(poolId, '10.99.0.255'))).rejects.toThrow(/broadcast address of 10.99.0.0\/24/);
  await expect(h1.requestAddress(addr(poolId, '10.99.0.0'))).rejects.toThrow(/network address/);
});

test('a /29 ip-range shared by two hosts runs out clearly, and a released address is the next one given', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId, pool: p } = await h1.requestPool(pool('10.99.0.0/24', '10.99.0.8/29'));
  expect({ poolId, p }).toEqual({ poolId: 'weave:10.99.0.0/24:10.99.0.8/29', p: '10.99.0.0/24' });
  await h2.requestPool(pool('10.99.0.0/24', '10.99.0.8/29'));
  expect(await h1.requestAddress({ poolId, address: null, kind: 'gateway' })).toEqual({ address: '10.99.0.1/24' }); // outside the range
  const first = await Promise.all(Array.from({ length: 5 }, () => h1.requestAddress(dyn(poolId))));
  // h1 holds the range's only block; h2 gets the rest of it all the same.
  const rest = await Promise.all(Array.from({ length: 3 }, () => h2.requestAddress(dyn(poolId))));
  const all = [...first, ...rest].map(bare).sort();
  expect(all).toEqual(['10.99.0.10', '10.99.0.11', '10.99.0.12', '10.99.0.13', '10.99.0.14', '10.99.0.15', '10.99.0.8', '10.99.0.9']);
  const full = new ExhaustedError('no free address in 10.99.0.8/29 (ip-range of pool 10.99.0.0/24): 8 of 8 in use');
  await expect(h1.requestAddress(dyn(poolId))).rejects.toThrow(full);
  await expect(h2.requestAddress(dyn(poolId))).rejects.toThrow(full);

  const freed = bare(rest[1]!);
  await h2.releaseAddress({ poolId, address: freed });
  await h2.releaseAddress({ poolId, address: freed }); // Docker repeats teardown: fine
  expect(bare(await h1.requestAddress(dyn(poolId)))).toBe(freed);
  await expect(h2.requestAddress(dyn(poolId))).rejects.toThrow(ExhaustedError);
});

test('gateway and aux addresses: one per network, the same on every host', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool(pool('10.61.0.0/24'));
  await h2.requestPool(pool('10.61.0.0/24'));
  expect(await h1.requestAddress({ poolId, address: null, kind: 'gateway' })).toEqual({ address: '10.61.0.1/24' });
  expect(await h2.requestAddress({ poolId, address: null, kind: 'gateway' })).toEqual({ address: '10.61.0.1/24' });
  expect(await h1.requestAddress(addr(poolId, '10.61.0.200', 'aux'))).toEqual({ address: '10.61.0.200/24' });
  await expect(h2.requestAddress(addr(poolId, '10.61.0.200'))).rejects.toThrow(/10.61.0.200 is already in use/);
  await expect(h2.requestAddress(addr(poolId, '10.61.0.1'))).rejects.toThrow(/10.61.0.1 is already in use/);
  expect(await h2.requestAddress(dyn(poolId))).toEqual({ address: '10.61.0.2/24' });
  expect((await h1.status({})).pools[0]).toMatchObject({ poolId, gateway: '10.61.0.1', holders: { h1: 1, h2: 1 } });
});

test('pools: overlaps and a second network on one host are refused; the last holder\'s release removes every key', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const other = await h1.requestPool(pool('10.70.0.0/24'));
  const { poolId } = await h1.requestPool(pool('10.64.0.0/24'));
  await expect(h1.requestPool(pool('10.64.0.0/24'))).rejects.toThrow(new ConflictError('subnet 10.64.0.0/24 is already used by another network on this host (h1)'));
  await expect(h2.requestPool(pool('10.64.0.0/16'))).rejects.toThrow(new ConflictError('subnet 10.64.0.0/16 overlaps 10.64.0.0/24, which a weave network already uses'));
  await expect(h2.requestPool(pool('10.64.0.128/25'))).rejects.toThrow(/overlaps 10.64.0.0\/24/);
  await expect(h2.requestPool(pool('10.64.0.0/24', '10.64.0.0/25'))).rejects.toThrow(/already used with no --ip-range/);
  await expect(h2.requestPool(pool('10.64.0.0/24', '10.65.0.0/25'))).rejects.toThrow(InvalidRequestError);
  await expect(h2.requestPool(pool('10.64.0.0/24', null, true))).rejects.toThrow(/not an IPv6 subnet/);
  await h2.requestPool(pool('10.64.0.0/24'));

  await h1.requestAddress({ poolId, address: null, kind: 'gateway' });
  await Promise.all([h1, h2, h1, h2].map((h) => h.requestAddress(dyn(poolId))));
  await h2.requestAddress(addr(poolId, '10.64.0.77', 'aux'));
  await h1.releasePool({ poolId });
  expect((await h2.status({})).pools.find((p) => p.poolId === poolId)!.holders).toEqual({ h2: 1 });
  await h2.releasePool({ poolId });

  const mine = 'v4-0a400000-24';
  expect(await keysOf(Buckets.ipamPools, mine)).toEqual([]);
  expect(await keysOf(Buckets.ipamBlocks, `${mine}.*`)).toEqual([]);
  expect(await keysOf(Buckets.ipamLeases, `${mine}.*`)).toEqual([]);
  expect((await allKeys()).pools).toEqual(['v4-0a460000-24']); // the other pool is untouched
  await expect(h1.releasePool({ poolId })).rejects.toThrow(NotFoundError);
  await expect(h1.requestAddress(dyn(poolId))).rejects.toThrow(NotFoundError);
  await expect(h1.releaseAddress({ poolId, address: '10.64.0.2' })).rejects.toThrow(NotFoundError);
  await h1.releasePool({ poolId: other.poolId });
  expect(await allKeys()).toEqual({ pools: [], blocks: [], leases: [] });
});

test('two hosts creating overlapping pools at the same moment never both keep them', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  for (let i = 0; i < 10; i++) {
    const r = await Promise.allSettled([h1.requestPool(pool(`10.80.${i * 4}.0/24`)), h2.requestPool(pool(`10.80.${i * 4}.0/22`))]);
    expect(r.filter((x) => x.status === 'fulfilled').length).toBeLessThanOrEqual(1);
    for (const x of r) if (x.status === 'rejected') expect(x.reason).toBeInstanceOf(ConflictError);
  }
  const pools = (await h1.status({})).pools.map((p) => parseCidr(p.pool));
  for (const a of pools) expect(pools.filter((b) => contains(a, { family: 4, value: b.base }) || contains(b, { family: 4, value: a.base }))).toEqual([a]);
});

test('a restarted ipam sees the same state and never hands out a live address again', async () => {
  let h1 = await host('h1');
  const { poolId } = await h1.requestPool(pool('10.65.0.0/24'));
  await h1.requestAddress({ poolId, address: null, kind: 'gateway' });
  const before = await Promise.all(Array.from({ length: 20 }, () => h1.requestAddress(dyn(poolId))));
  const freed = before.splice(3, 4);
  for (const a of freed) await h1.releaseAddress({ poolId, address: bare(a) });
  const { pools: status } = await h1.status({});
  await h1.kill();

  h1 = await host('h1');
  expect((await h1.status({})).pools).toEqual(status);
  const after = await Promise.all(Array.from({ length: 30 }, () => h1.requestAddress(dyn(poolId))));
  const live = new Set([...before, ...after].map((a) => a.address));
  expect(live.size).toBe(before.length + after.length);
  expect(live.has('10.65.0.1/24')).toBe(false);
  // The lowest free come first, so the freed addresses are reused before new ones.
  expect(after.slice(0, 4).map((a) => a.address).sort()).toEqual(freed.map((a) => a.address).sort());
  await expect(h1.requestPool(pool('10.65.0.0/24'))).rejects.toThrow(/already used by another network on this host/);
});

test('malformed NATS requests get {ok:false} with the right code and change no KV state', async () => {
  const h1 = await host('h1');
  const { poolId } = await h1.requestPool(pool('10.66.0.0/24'));
  await h1.requestAddress(dyn(poolId));
  const snapshot = async () => {
    const kv = await openBucket(client, Buckets.ipamLeases);
    const revisions = await Promise.all((await kvKeys(kv)).map(async (k) => [k, (await kvGet(kv, k, z.unknown()))?.revision]));
    return { keys: await allKeys(), revisions, status: (await h1.status({})).pools };
  };
  const before = await snapshot();
  const ask = async (method: string, body: string) =>
    (await client.request(Subjects.rpc('h1', 'ipam', method), body, { timeout: 5000 })).json<{ ok: boolean; error?: { code: string; message: string } }>();
  const cases: Array<[string, string, string]> = [
    ['requestAddress', 'not json', 'invalid'],
    ['requestAddress', '', 'invalid'],
    ['requestAddress', '[]', 'invalid'],
    ['requestAddress', JSON.stringify({ poolId: 5, address: null, kind: 'endpoint' }), 'invalid'],
    ['requestAddress', JSON.stringify({ poolId, address: '10.66.0.300', kind: 'endpoint' }), 'invalid'],
    ['requestAddress', JSON.stringify({ poolId, address: null, kind: 'router' }), 'invalid'],
    ['requestAddress', JSON.stringify({ poolId, address: null, kind: 'endpoint', extra: 1 }), 'invalid'],
    ['requestAddress', JSON.stringify({ poolId: 'weave:10.99.0.0/24', address: null, kind: 'endpoint' }), 'not_found'],
    ['requestAddress', JSON.stringify({ poolId: 'weave:10.66.0.0/24:10.66.0.0/25', address: null, kind: 'endpoint' }), 'not_found'],
    ['requestAddress', JSON.stringify({ poolId: 'garbage', address: null, kind: 'endpoint' }), 'invalid'],
    ['requestAddress', JSON.stringify({ poolId, address: '10.67.0.1', kind: 'endpoint' }), 'invalid'],
    ['releaseAddress', JSON.stringify({ poolId, address: '10.66.1.1' }), 'invalid'],
    ['releaseAddress', JSON.stringify({ poolId: 'weave:10.99.0.0/24', address: '10.99.0.1' }), 'not_found'],
    ['releasePool', JSON.stringify({ poolId: 'weave:10.99.0.0/24' }), 'not_found'],
    ['releasePool', JSON.stringify({ poolId: 'weave:10.66.0.1/24' }), 'invalid'],
    ['releasePool', JSON.stringify({}), 'invalid'],
    ['requestPool', JSON.stringify({ addressSpace: 'x', pool: '10.0.0.1/8', subPool: null, v6: false, options: {} }), 'invalid'],
    ['requestPool', JSON.stringify({ addressSpace: 'x', pool: '10.66.0.0/24', subPool: null, v6: 'no', options: {} }), 'invalid'],
    ['requestPool', JSON.stringify({ addressSpace: 'x', pool: null, subPool: 'fd00::/120', v6: true, options: {} }), 'invalid'],
    ['requestPool', JSON.stringify({ addressSpace: 'x', pool: '10.66.0.0/16', subPool: null, v6: false, options: {} }), 'conflict'],
    ['status', JSON.stringify({ extra: 'field' }), 'invalid'],
    ['dropEverything', '{}', 'invalid'],
  ];
  for (const [method, body, code] of cases) {
    expect({ method, body, reply: await ask(method, body) }).toEqual({ method, body, reply: { ok: false, error: { code, message: expect.any(String) } } });
  }
  expect(await snapshot()).toEqual(before);
});

test('default subnets avoid pools and host routes; two hosts asking at once get different ones', async () => {
  const [h1, h2] = [await host('h1', new StaticRoutes([parseCidr('10.32.0.0/24'), parseCidr('10.32.3.7/32')])), await host('h2')];
  const [a, b] = await Promise.all([h1.requestPool(pool(null)), h2.requestPool(pool(null))]);
  expect(a.pool).not.toBe(b.pool);
  expect(a.pool).not.toBe('10.32.0.0/24');
  expect(a.poolId).toBe(`weave:${a.pool}`);
  // Docker asks again while it still holds the earlier answer: each answer must be new.
  const more = [];
  for (let i = 0; i < 3; i++) more.push((await h1.requestPool(pool(null))).pool);
  expect(new Set([a.pool, b.pool, ...more]).size).toBe(5);
  expect(more).not.toContain('10.32.3.0/24');
  // The other host joins a default pool by naming it, as the network catalogue will.
  expect((await h2.requestPool(pool(a.pool))).poolId).toBe(a.poolId);
  await expect(h1.requestPool(pool(null, 'fd00::/120', true))).rejects.toThrow(/needs --subnet/);
  await expect(h1.requestPool(pool(null, '10.32.9.0/25'))).rejects.toThrow(/needs --subnet/);
});

test('IPv6 pools: explicit subnet, dynamic and static addresses', async () => {
  const h1 = await host('h1');
  const { poolId } = await h1.requestPool(pool('fd00:1::/64', null, true));
  expect(poolId).toBe('weave:fd00:1::/64');
  expect(await h1.requestAddress({ poolId, address: null, kind: 'gateway' })).toEqual({ address: 'fd00:1::1/64' });
  expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: 'fd00:1::2/64' });
  expect(await h1.requestAddress(addr(poolId, 'fd00:1::ffff:1'))).toEqual({ address: 'fd00:1::ffff:1/64' });
  await expect(h1.requestAddress(addr(poolId, 'fd00:1::2'))).rejects.toThrow('address fd00:1::2 is already in use in fd00:1::/64');
  await h1.releasePool({ poolId });
  expect(await allKeys()).toEqual({ pools: [], blocks: [], leases: [] });
});

test('state changes are published as events with increasing seq', async () => {
  const seen: EventEnvelope[] = [];
  const sub = subscribeEvents(client, (e) => void seen.push(e), () => undefined, 'weave.events.h1.ipam.>');
  try {
    await client.flush();
    const h1 = await host('h1');
    const { poolId } = await h1.requestPool(pool('10.67.0.0/24'));
    await h1.requestAddress(dyn(poolId));
    await h1.releaseAddress({ poolId, address: '10.67.0.1' });
    await h1.releasePool({ poolId });
    await waitFor(() => seen.some((e) => e.kind === 'pool.released'), { what: 'pool.released event', timeoutMs: 5000 });
    expect(seen.map((e) => e.kind)).toEqual(['service.started', 'pool.requested', 'block.claimed', 'address.allocated', 'address.released', 'block.released', 'pool.released']);
    expect(seen.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  } finally {
    sub.unsubscribe();
  }
});

describe('pool keys from a watch', () => {
  /** The watches of the pools bucket: consumers somebody listens to (key listings leave idle ones behind). */
  const poolConsumers = async () => {
    const jsm = await jetstreamManager(client);
    const names: string[] = [];
    for await (const c of jsm.consumers.list(`KV_${Buckets.ipamPools}`)) if (c.push_bound) names.push(c.name);
    return names;
  };
  /** Deletes h2's watch consumer: its pool keys then stay as they were until it reopens, 1.5 s later. */
  const freeze = async (others: string[]) => {
    const theirs = (await poolConsumers()).filter((n) => !others.includes(n));
    expect(theirs).toHaveLength(1);
    await (await jetstreamManager(client)).consumers.delete(`KV_${Buckets.ipamPools}`, theirs[0]!);
  };
  const slowToReopen = (nc: NatsConnection) => openIpamStore(nc, 1, silentLogger(), { reopenMs: 1500 });

  test('a host whose watch lags still withdraws a pool overlapping one created just before, and a stale key never refuses', async () => {
    const h1 = await host('h1');
    const h1Watch = await poolConsumers();
    const h2 = await host('h2', new StaticRoutes(), { store: slowToReopen });
    await freeze(h1Watch);
    await h1.requestPool(pool('10.90.0.0/24'));
    // h2's keys do not show 10.90.0.0/24 yet, so it creates its pool; before deciding it waits until
    // its keys reflect its own create, and with it every earlier one.
    await expect(h2.requestPool(pool('10.90.0.0/16'))).rejects.toThrow(
      new ConflictError('subnet 10.90.0.0/16 overlaps 10.90.0.0/24, which another host created at the same moment; try again'),
    );
    expect(await keysOf(Buckets.ipamPools)).toEqual(['v4-0a5a0000-24']);
    await expect(h2.requestPool(pool('10.90.0.0/16'))).rejects.toThrow(/overlaps 10.90.0.0\/24, which a weave network already uses/);

    // Removed while h2's keys lag: the stale key is read back and does not refuse the subnet.
    await freeze(h1Watch);
    await h1.releasePool({ poolId: 'weave:10.90.0.0/24' });
    expect(await h2.requestPool(pool('10.90.0.0/16'))).toMatchObject({ poolId: 'weave:10.90.0.0/16' });
    expect(await keysOf(Buckets.ipamPools)).toEqual(['v4-0a5a0000-16']);
  });
});

describe('a caller that gave up', () => {
  /** A KV write stalling for a minute, as seen by ipam's clock: a fault that cannot be caused on demand. */
  function stallingClock() {
    const clock = { skew: 0, armed: false };
    const landed = async <R>(r: Promise<R>): Promise<R> => {
      const v = await r;
      if (clock.armed) [clock.armed, clock.skew] = [false, 60_000];
      return v;
    };
    const wrap = <T>(t: Table<T>): Table<T> => ({
      name: t.name,
      get: (k) => t.get(k),
      create: (k, v) => landed(t.create(k, v)),
      mutate: (k, d) => landed(t.mutate(k, d)),
      deleteAt: (k, r) => t.deleteAt(k, r),
    });
    const store = async (nc: NatsConnection): Promise<IpamStore> => {
      const s = await openIpamStore(nc, 1, silentLogger());
      return { ...s, pools: wrap(s.pools), leases: wrap(s.leases) };
    };
    return { clock, store, now: () => new Date(Date.now() + clock.skew) };
  }

  test('a RequestPool or RequestAddress that finishes after plugin-api gave up leaves nothing behind, and Docker\'s retry succeeds', async () => {
    const stall = stallingClock();
    const h1 = await host('h1', new StaticRoutes(), stall);
    stall.clock.armed = true;
    const err = await h1.requestPool(pool('10.91.0.0/24')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/^RequestPool for 10.91.0.0\/24 finished after its caller gave up waiting at .*; what it took was given back, so a retry starts clean$/);
    expect(await keysOf(Buckets.ipamPools)).toEqual([]);
    stall.clock.skew = 0;
    const { poolId } = await h1.requestPool(pool('10.91.0.0/24'));
    expect((await h1.status({})).pools).toEqual([expect.objectContaining({ poolId, holders: { h1: 1 } })]);

    await h1.requestAddress({ poolId, address: null, kind: 'gateway' });
    stall.clock.armed = true;
    await expect(h1.requestAddress(dyn(poolId))).rejects.toThrow(/^RequestAddress \(endpoint\) in weave:10.91.0.0\/24 finished after its caller gave up/);
    expect(await keysOf(Buckets.ipamLeases)).toEqual(['v4-0a5b0000-24.0a5b0001']);
    stall.clock.skew = 0;
    expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.91.0.2/24' });
  });

  test('a request whose deadline passed before ipam got to it changes nothing; a malformed deadline is refused', async () => {
    const h1 = await host('h1');
    const ask = async (deadline: string) => {
      const h = headers();
      h.set(RpcHeaders.deadline, deadline);
      const body = JSON.stringify(pool('10.92.0.0/24'));
      return (await client.request(Subjects.rpc('h1', 'ipam', 'requestPool'), body, { timeout: 5000, headers: h })).json();
    };
    expect(await ask(String(Date.now() - 1000))).toEqual({ ok: false, error: { code: 'unavailable', message: expect.stringMatching(/before its turn came; nothing was done/) } });
    expect(await ask('tomorrow')).toEqual({ ok: false, error: { code: 'invalid', message: expect.stringMatching(/bad Weave-Deadline header/) } });
    expect(await allKeys()).toEqual({ pools: [], blocks: [], leases: [] });
    await h1.requestPool(pool('10.92.0.0/24'));
  });
});

describe('blocks and leases from mirrors', () => {
  const KEY = 'v4-0a440000-24'; // 10.68.0.0/24

  /** A host whose store the test can look into; a watch of it that stops reopens only after 1.5 s. */
  async function hostWithStore(name: string) {
    let store: IpamStore | undefined;
    const h = await host(name, new StaticRoutes(), { store: async (nc) => (store = await openIpamStore(nc, 1, silentLogger(), { reopenMs: 1500 })) });
    return { h, store: store! };
  }
  /** The watches of a bucket: consumers somebody listens to (key listings leave idle ones behind). */
  const watchesOf = async (bucket: string) => {
    const names: string[] = [];
    for await (const c of (await jetstreamManager(client)).consumers.list(`KV_${bucket}`)) if (c.push_bound) names.push(c.name);
    return names;
  };
  /** Deletes a watch's consumer: its mirror then stays as it was until it reopens. */
  const freeze = async (bucket: string, watch: string) => (await jetstreamManager(client)).consumers.delete(`KV_${bucket}`, watch);

  /**
   * Every request to create a JetStream consumer, from any connection: the JetStream API is plain
   * NATS subjects, so a subscriber sees the requests themselves, also ones the server would stall.
   */
  async function consumerCreations() {
    const seen: string[] = [];
    const sub = client.subscribe('$JS.API.CONSUMER.>', {
      callback: (_, m) => void (/^\$JS\.API\.CONSUMER\.(DURABLE\.)?CREATE\./.test(m.subject) && seen.push(m.subject)),
    });
    await client.flush();
    return { seen, stop: () => sub.unsubscribe() };
  }

  test('after the start, no request creates a JetStream consumer, on any path that used to list keys', async () => {
    const [h1, h2] = [await host('h1'), await host('h2')];
    const creations = await consumerCreations();
    try {
      const { poolId } = await h1.requestPool(pool('10.68.0.0/24', '10.68.0.0/26'));
      await h2.requestPool(pool('10.68.0.0/24', '10.68.0.0/26'));
      await Promise.all([h1, h2].map((h) => h.requestAddress({ poolId, address: null, kind: 'gateway' })));
      // h2 claims two blocks of the four, h1 the other two and then borrows from h2's.
      await Promise.all(Array.from({ length: 20 }, () => h2.requestAddress(dyn(poolId))));
      const h1s = await Promise.all(Array.from({ length: 40 }, () => h1.requestAddress(dyn(poolId))));
      await h2.requestAddress(addr(poolId, '10.68.0.200'));
      await h1.requestAddress(addr(poolId, '10.68.0.201', 'aux'));
      await h1.releaseAddress({ poolId, address: bare(h1s[7]!) });
      expect((await h2.status({})).pools[0]!.blocks.map((b) => b.owner)).toEqual(['h2', 'h2', 'h1', 'h1']);
      await h1.releasePool({ poolId }); // h1 leaves: its blocks and leases go
      await h2.releasePool({ poolId }); // the last holder drains the pool
      const other = await h1.requestPool(pool(null));
      await h1.releasePool({ poolId: other.poolId });
      await client.flush();
      expect(creations.seen).toEqual([]);

      // The probe is not blind: a listing asks for a consumer.
      expect(await allKeys()).toEqual({ pools: [], blocks: [], leases: [] });
      await waitFor(() => creations.seen.length > 0, { what: 'the listing\'s consumer creation to be seen', timeoutMs: 5000 });
    } finally {
      creations.stop();
    }
  });

  test('a second host\'s blocks and leases reach the first host\'s mirrors by themselves, and leave them when released', async () => {
    const { h: h1, store: s1 } = await hostWithStore('h1');
    const h2 = await host('h2');
    const { poolId } = await h1.requestPool(pool('10.68.0.0/24'));
    await h2.requestPool(pool('10.68.0.0/24'));
    const theirs = await h2.requestAddress(dyn(poolId)); // h2 claims 10.68.0.0/28
    await h2.requestAddress(addr(poolId, '10.68.0.100', 'aux'));
    const { blocks, leases } = s1.mirrors;
    await waitFor(() => leases.keys(KEY).length === 2, { what: 'h2\'s leases in h1\'s mirror', timeoutMs: 5000 });
    expect(children(blocks, KEY).map((b) => [b.key, b.value.owner])).toEqual([[`${KEY}.0a440000`, 'h2']]);
    expect(leases.get(`${KEY}.0a440001`)?.value).toMatchObject({ host: 'h2', kind: 'endpoint' });
    expect(leases.get(`${KEY}.0a440064`)?.value).toMatchObject({ host: 'h2', kind: 'aux' });
    // h1 claims the next block, not h2's.
    expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.68.0.16/24' });

    await h2.releaseAddress({ poolId, address: bare(theirs) });
    await h2.releasePool({ poolId }); // its block goes; the aux address stays with the network
    await waitFor(() => children(blocks, KEY).every((b) => b.value.owner === 'h1'), { what: 'h2\'s block to leave h1\'s mirror', timeoutMs: 5000 });
    await waitFor(() => leases.keys(KEY).sort().join() === `${KEY}.0a440010,${KEY}.0a440064`, { what: 'h2\'s lease to leave h1\'s mirror', timeoutMs: 5000 });
  });

  test('a block claimed while this host\'s mirror lags is skipped when our create fails, never shared', async () => {
    const { h: h1, store: s1 } = await hostWithStore('h1');
    const [h1Blocks] = await watchesOf(Buckets.ipamBlocks);
    const h2 = await host('h2');
    const { poolId } = await h1.requestPool(pool('10.68.0.0/24'));
    await h2.requestPool(pool('10.68.0.0/24'));
    await h1.requestAddress({ poolId, address: null, kind: 'gateway' }); // loads h1's view of the pool
    await freeze(Buckets.ipamBlocks, h1Blocks!);
    expect(await h2.requestAddress(dyn(poolId))).toEqual({ address: '10.68.0.2/24' }); // claims 10.68.0.0/28
    expect(s1.mirrors.blocks.keys(KEY)).toEqual([]); // h1 has not seen it
    expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.68.0.16/24' });
    expect((await h2.status({})).pools[0]!.blocks.map((b) => [b.block, b.owner])).toEqual([
      ['10.68.0.0/28', 'h2'],
      ['10.68.0.16/28', 'h1'],
    ]);
  });

  test('the last holder\'s teardown removes keys its lagging mirror has not shown yet: it waits for the buckets\' last revisions', async () => {
    const { h: h1, store: s1 } = await hostWithStore('h1');
    const [h1Leases] = await watchesOf(Buckets.ipamLeases);
    const h2 = await host('h2');
    const { poolId } = await h1.requestPool(pool('10.68.0.0/24'));
    await h2.requestPool(pool('10.68.0.0/24'));
    await h1.requestAddress({ poolId, address: null, kind: 'gateway' });
    await freeze(Buckets.ipamLeases, h1Leases!);
    await h2.requestAddress(addr(poolId, '10.68.0.100', 'aux'));
    await h2.releasePool({ poolId }); // the aux address stays: h1 still has the network
    expect(s1.mirrors.leases.keys(KEY)).toEqual([`${KEY}.0a440001`]); // h1 has not seen the aux lease
    await h1.releasePool({ poolId });
    expect(await allKeys()).toEqual({ pools: [], blocks: [], leases: [] });
  });
});

test('IPv6 networks without --subnet, asked for on three hosts at once, get distinct /64s of one ULA /48 kept in KV', async () => {
  const hosts = [await host('h1'), await host('h2'), await host('h3')];
  const got = await Promise.all(hosts.map((h) => h.requestPool(pool(null, null, true))));
  const record = await kvGet(await openBucket(client, Buckets.ipamMesh), 'ula', z.object({ prefix: z.string(), createdBy: z.string() }));
  const ula = parseCidr(record!.value.prefix);
  expect(ula).toMatchObject({ family: 6, prefix: 48 });
  expect(['h1', 'h2', 'h3']).toContain(record!.value.createdBy);
  for (const r of got) expect(contains(ula, { family: 6, value: parseCidr(r.pool).base }) && parseCidr(r.pool).prefix === 64).toBe(true);
  expect(new Set(got.map((r) => r.pool)).size).toBe(3);
  for (const [i, h] of hosts.entries()) await h.releasePool({ poolId: got[i]!.poolId });
  expect(await allKeys()).toEqual({ pools: [], blocks: [], leases: [] });
});
