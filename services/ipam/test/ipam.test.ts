import { connect, NatsConnection } from '@nats-io/transport-node';
import { kvKeys, openBucket, rpcClient } from '@weave/bus';
import { Buckets, ipamRpc, Subjects } from '@weave/contracts';
import { ConflictError, ExhaustedError, InvalidRequestError, NotFoundError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { Cidr, parseCidr } from '@weave/netaddr';
import { NatsServer, startNatsServer } from '@weave/testing';
import { startIpam } from '../src/service';

/** Two IPAM hosts on one real nats-server, called over real NATS as plugin-api calls them. */
let server: NatsServer;
let nc: NatsConnection;
const stops: Array<() => Promise<void>> = [];
let routes: Cidr[] = [];

async function host(name: string) {
  const s = await startIpam({
    nc,
    host: name,
    log: silentLogger(),
    routes: { prefixes: async () => routes },
    defaultRange: parseCidr('10.32.0.0/12'),
    defaultPrefix: 24,
    blockSize: 16,
    replicas: 1,
  });
  stops.push(s.stop);
  return rpcClient(nc, name, ipamRpc);
}

beforeEach(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  routes = [];
});
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  await nc?.close();
  await server?.stop();
});

const pool = (p: string, subPool: string | null = null) => ({ addressSpace: 'weave-local', pool: p, subPool, v6: false, options: {} });
const dyn = (poolId: string) => ({ poolId, address: null, kind: 'endpoint' as const });
const keysOf = async (bucket: string) => kvKeys(await openBucket(nc, bucket));

test('200 concurrent requests across two hosts get 200 distinct addresses, each from its own blocks', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool(pool('10.60.0.0/22'));
  await h2.requestPool(pool('10.60.0.0/22'));
  const got = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? h1 : h2).requestAddress(dyn(poolId))));
  expect(new Set(got.map((g) => g.address)).size).toBe(200);
  expect(got.every((g) => g.address.endsWith('/22'))).toBe(true);
  const { pools } = await h1.status({});
  const blocks = pools[0]!.blocks;
  expect(new Set(blocks.map((b) => b.block)).size).toBe(blocks.length);
  expect(blocks.reduce((n, b) => n + b.used, 0)).toBe(200);
  expect(new Set(blocks.map((b) => b.owner))).toEqual(new Set(['h1', 'h2']));
});

test('a static address is unique mesh-wide, also inside another host\'s block', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool(pool('10.61.0.0/24'));
  await h2.requestPool(pool('10.61.0.0/24'));
  const first = await h1.requestAddress(dyn(poolId)); // h1 now owns 10.61.0.0/28
  expect(first.address).toBe('10.61.0.1/24');
  expect(await h2.requestAddress({ poolId, address: '10.61.0.2', kind: 'endpoint' })).toEqual({ address: '10.61.0.2/24' });
  await expect(h1.requestAddress({ poolId, address: '10.61.0.2', kind: 'endpoint' })).rejects.toThrow(new ConflictError('address 10.61.0.2 is already in use in 10.61.0.0/24'));
  // h1's next dynamic address skips the one h2 took in h1's block.
  expect((await h1.requestAddress(dyn(poolId))).address).toBe('10.61.0.3/24');
  await expect(h1.requestAddress({ poolId, address: '10.62.0.9', kind: 'endpoint' })).rejects.toThrow(InvalidRequestError);
  await expect(h1.requestAddress({ poolId, address: '10.61.0.255', kind: 'endpoint' })).rejects.toThrow(/broadcast/);
});

test('gateway and aux addresses; a small ip-range runs out clearly and a released address comes back', async () => {
  const h1 = await host('h1');
  const { poolId } = await h1.requestPool(pool('10.63.0.0/24', '10.63.0.8/30'));
  expect(await h1.requestAddress({ poolId, address: null, kind: 'gateway' })).toEqual({ address: '10.63.0.1/24' });
  expect(await h1.requestAddress({ poolId, address: '10.63.0.200', kind: 'aux' })).toEqual({ address: '10.63.0.200/24' });
  const four = await Promise.all(Array.from({ length: 4 }, () => h1.requestAddress(dyn(poolId))));
  expect(four.map((a) => a.address).sort()).toEqual(['10.63.0.10/24', '10.63.0.11/24', '10.63.0.8/24', '10.63.0.9/24']);
  await expect(h1.requestAddress(dyn(poolId))).rejects.toThrow(new ExhaustedError('no free address in 10.63.0.8/30 (ip-range of 10.63.0.0/24): 4 of 4 in use'));
  await h1.releaseAddress({ poolId, address: '10.63.0.9' });
  await h1.releaseAddress({ poolId, address: '10.63.0.9' }); // twice is fine
  expect(await h1.requestAddress(dyn(poolId))).toEqual({ address: '10.63.0.9/24' });
});

test('pools: overlap and same-host reuse are refused; the last holder\'s release removes every key', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool(pool('10.64.0.0/24'));
  await expect(h1.requestPool(pool('10.64.0.0/24'))).rejects.toThrow(/already used by another network on this host/);
  await expect(h2.requestPool(pool('10.64.0.0/16'))).rejects.toThrow(/overlaps 10.64.0.0\/24/);
  await expect(h2.requestPool(pool('10.64.0.0/24', '10.64.0.0/25'))).rejects.toThrow(/ip-range/);
  await h2.requestPool(pool('10.64.0.0/24'));
  await h1.requestAddress(dyn(poolId));
  await h2.requestAddress(dyn(poolId));
  await h1.releasePool({ poolId });
  expect((await h2.status({})).pools[0]!.holders).toEqual({ h2: 1 });
  await h2.releasePool({ poolId });
  expect(await keysOf(Buckets.ipamPools)).toEqual([]);
  expect(await keysOf(Buckets.ipamBlocks)).toEqual([]);
  expect(await keysOf(Buckets.ipamLeases)).toEqual([]);
  await expect(h1.releasePool({ poolId })).rejects.toThrow(NotFoundError);
  await expect(h1.requestAddress(dyn(poolId))).rejects.toThrow(NotFoundError);
});

test('default subnets avoid host routes, and two hosts asking at once get different ones', async () => {
  routes = [parseCidr('10.32.0.0/24')];
  const [h1, h2] = [await host('h1'), await host('h2')];
  const [a, b] = await Promise.all([h1.requestPool({ ...pool(''), pool: null }), h2.requestPool({ ...pool(''), pool: null })]);
  expect([a.pool, b.pool].sort()).toEqual(['10.32.1.0/24', '10.32.2.0/24']);
  await expect(h1.requestPool({ ...pool(''), pool: null, v6: true })).rejects.toThrow(/--subnet/);
});

test('a restarted ipam sees the same state and never hands out a live address again', async () => {
  const h1 = await host('h1');
  const { poolId } = await h1.requestPool(pool('10.65.0.0/24'));
  const before = await Promise.all(Array.from({ length: 20 }, () => h1.requestAddress(dyn(poolId))));
  await stops.pop()!();
  const again = await host('h1');
  const after = await Promise.all(Array.from({ length: 20 }, () => again.requestAddress(dyn(poolId))));
  expect(new Set([...before, ...after].map((a) => a.address)).size).toBe(40);
});

test('malformed NATS requests are refused with the right code and change nothing', async () => {
  const h1 = await host('h1');
  const { poolId } = await h1.requestPool(pool('10.66.0.0/24'));
  await h1.requestAddress(dyn(poolId));
  const snapshot = async () => [await keysOf(Buckets.ipamPools), await keysOf(Buckets.ipamBlocks), await keysOf(Buckets.ipamLeases)];
  const before = await snapshot();
  const ask = async (method: string, body: string) => (await nc.request(Subjects.rpc('h1', 'ipam', method), body, { timeout: 3000 })).json<{ ok: boolean; error?: { code: string } }>();
  for (const [method, body, code] of [
    ['requestAddress', 'not json', 'invalid'],
    ['requestAddress', JSON.stringify({ poolId: 5, address: null, kind: 'endpoint' }), 'invalid'],
    ['requestAddress', JSON.stringify({ poolId: 'weave:10.99.0.0/24', address: null, kind: 'endpoint' }), 'not_found'],
    ['requestAddress', JSON.stringify({ poolId: 'garbage', address: null, kind: 'endpoint' }), 'invalid'],
    ['releaseAddress', JSON.stringify({ poolId, address: '10.66.1.1' }), 'invalid'],
    ['requestPool', JSON.stringify({ addressSpace: 'x', pool: '10.0.0.1/8', subPool: null, v6: false, options: {} }), 'invalid'],
    ['dropEverything', '{}', 'invalid'],
  ] as const) {
    expect({ method, body, reply: await ask(method, body) }).toEqual({ method, body, reply: { ok: false, error: expect.objectContaining({ code }) } });
  }
  expect(await snapshot()).toEqual(before);
});
