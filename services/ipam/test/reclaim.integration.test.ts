import { connect, NatsConnection } from '@nats-io/transport-node';
import { kvGet, kvKeys, openBucket, rpcClient, subscribeEvents } from '@weave/bus';
import { Buckets, EventEnvelope, ipamRpc } from '@weave/contracts';
import { ConflictError, InvalidRequestError, NotFoundError, UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { contains, parseCidr, parseIpInCidr } from '@weave/netaddr';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';
import { leaseKey } from '../src/core/keys';
import { BlockRecord, LeaseRecord } from '../src/core/records';
import { HostRecord } from '../src/core/hosts';
import { StaticRoutes } from '../src/host-routes';
import { startIpam } from '../src/service';

/**
 * Lost hosts, on one real nats-server: several ipam hosts with their own connections and one
 * clock the test steps. Renewals run when the test calls tick (each test is over long before the
 * timer's first one), so which host renews when is the test's choice, not the scheduler's.
 */
jest.setTimeout(30_000);

const LEASE = 60_000;
/**
 * The deadline a call carries is the caller's real time plus this, and the service compares it
 * with the stepped clock: long enough that the few leases a test steps never make a call late.
 */
const CALL_TIMEOUT = 20 * LEASE;
let server: NatsServer;
let client: NatsConnection;

// Starts at the real time: callers' deadlines are real (Date.now() + timeout), see CALL_TIMEOUT.
let t = Date.now();
const now = () => new Date(t);
const running: Array<() => Promise<void>> = [];
beforeEach(async () => {
  t = Date.now();
  server = await startNatsServer();
  client = await connect({ servers: server.url });
});
// One teardown, in order: the hosts, then the test's own connection, then the server.
afterEach(async () => {
  for (const stop of running.splice(0)) await stop().catch(() => undefined);
  await client?.close().catch(() => undefined);
  await server?.stop();
});

async function host(name: string) {
  const nc = await connect({ servers: server.url });
  const s = await startIpam({
    nc,
    host: name,
    log: silentLogger(),
    routes: new StaticRoutes(),
    config: { defaultRange: parseCidr('10.32.0.0/12'), defaultPrefix: 24, blockSize: 16 },
    replicas: 1,
    // The timer's first renewal is 20 s of real time away: every renewal in a test is its tick().
    lease: { renewMs: LEASE / 3, leaseMs: LEASE },
    now,
  });
  const stop = async () => {
    await s.stop();
    await nc.close();
  };
  running.push(stop);
  /** The host is gone: no renewals, no answers. Its KV keys stay as they were. */
  const kill = async () => {
    running.splice(running.indexOf(stop), 1);
    await stop();
  };
  return Object.assign(rpcClient(client, name, ipamRpc, { timeoutMs: CALL_TIMEOUT }), { name, kill, tick: () => s.lease.tick() });
}
type Host = Awaited<ReturnType<typeof host>>;

/** Time passes in steps a third of the lease long; the hosts named renew after each step. */
async function advance(ms: number, renewing: readonly Host[]) {
  for (let left = ms; left > 0; left -= LEASE / 3) {
    t += Math.min(left, LEASE / 3);
    for (const h of renewing) await h.tick();
  }
}

const POOL = { addressSpace: 'weave-local', pool: '10.70.0.0/24', subPool: '10.70.0.0/27', v6: false, options: {} };
const dyn = (poolId: string) => ({ poolId, address: null, kind: 'endpoint' as const });
const bare = (a: { address: string }) => a.address.split('/')[0]!;
const many = (h: Host, poolId: string, n: number) => Promise.all(Array.from({ length: n }, () => h.requestAddress(dyn(poolId)).then(bare)));

async function table<T>(bucket: string, schema: { parse: (v: unknown) => T }) {
  const kv = await openBucket(client, bucket);
  const out = new Map<string, T>();
  for (const k of await kvKeys(kv)) {
    const v = await kvGet(kv, k, schema as never);
    if (v) out.set(k, v.value as T);
  }
  return out;
}
const leases = () => table(Buckets.ipamLeases, LeaseRecord);
const blocks = () => table(Buckets.ipamBlocks, BlockRecord);
const hostRecord = async (name: string) => (await table(Buckets.ipamHosts, HostRecord)).get(name);

function events(): EventEnvelope[] {
  const seen: EventEnvelope[] = [];
  const sub = subscribeEvents(client, (e) => seen.push(e), () => undefined);
  running.push(async () => sub.unsubscribe());
  return seen;
}
const kinds = (seen: EventEnvelope[], kind: string) => seen.filter((e) => e.kind === kind);

test('a stopped host is reclaimed by exactly one of two survivors after its lease, its addresses are given again, none twice', async () => {
  const seen = events();
  const [h1, h2, h3] = [await host('h1'), await host('h2'), await host('h3')];
  const { poolId } = await h3.requestPool(POOL);
  await h1.requestPool(POOL);
  await h2.requestPool(POOL);
  const lost = await many(h3, poolId, 10);
  const kept = [...(await many(h1, poolId, 5)), ...(await many(h2, poolId, 5))];
  expect(new Set([...lost, ...kept]).size).toBe(20);

  await h3.kill();
  await advance(LEASE / 2, [h1, h2, h3].slice(0, 2));
  // Half a lease: nobody reclaims yet.
  await Promise.all([h1.tick(), h2.tick()]);
  expect(await hostRecord('h3')).toMatchObject({ state: 'live', epoch: 1 });

  await advance(LEASE / 2 + 1, [h1, h2]);
  await Promise.all([h1.tick(), h2.tick()]);
  const record = await hostRecord('h3');
  expect(record).toMatchObject({ state: 'reclaimed', epoch: 2, done: true, pools: [{ poolId, gateway: null }] });
  await waitFor(() => kinds(seen, 'host.reclaimed').length === 1, { what: 'the host.reclaimed event' });
  const [reclaimed] = kinds(seen, 'host.reclaimed');
  expect(reclaimed).toMatchObject({ host: record!.state === 'reclaimed' ? record!.reclaimedBy : '', data: { host: 'h3', epoch: 1, pools: [poolId] } });
  expect((reclaimed!.data as { addresses: Array<{ address: string }> }).addresses.map((a) => a.address).sort()).toEqual([...lost].sort());

  // Nothing of h3's is left: its leases, its blocks, its reference on the pool.
  expect([...(await leases()).values()].filter((l) => l.host === 'h3')).toEqual([]);
  expect([...(await blocks()).values()].filter((b) => b.owner === 'h3')).toEqual([]);
  expect((await h1.status({})).pools[0]!.holders).toEqual({ h1: 1, h2: 1 });

  // The range has 31 addresses: the survivors get all that are left, h3's among them.
  const rest = [...(await many(h1, poolId, 11)), ...(await many(h2, poolId, 10))];
  await expect(h1.requestAddress(dyn(poolId))).rejects.toThrow(/no free address/);
  const live = [...kept, ...rest];
  expect(new Set(live).size).toBe(31);
  expect(lost.every((a) => rest.includes(a))).toBe(true);
  // Every lease key is one of the addresses handed out and still live, held by the host that got it.
  const byKey = await leases();
  expect(byKey.size).toBe(31);
  expect([...byKey.values()].every((l) => l.host === 'h1' || l.host === 'h2')).toBe(true);
});

test('a host cut off beyond its lease stands down, registers again under a new epoch, gets fresh blocks and never writes into a reclaimed one', async () => {
  const seen = events();
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool({ ...POOL, subPool: null });
  await h2.requestPool({ ...POOL, subPool: null });
  const before = await many(h2, poolId, 3);
  const reclaimedBlocks = [...(await blocks()).entries()].filter(([, b]) => b.owner === 'h2').map(([k]) => k);
  expect(reclaimedBlocks).toHaveLength(1);

  // h2 does not renew (cut off), h1 does, and reclaims it.
  await advance(LEASE + 1, [h1]);
  expect(await hostRecord('h2')).toMatchObject({ state: 'reclaimed', reclaimedBy: 'h1', epoch: 2, done: true });
  // h1 takes the freed block at once.
  const h1Now = await many(h1, poolId, 20);

  // Back, before its next renewal: it knows it has not renewed for a lease, and refuses.
  const refused = await h2.requestAddress(dyn(poolId)).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(UnavailableError);
  expect((refused as Error).message).toMatch(/ipam on h2 allocates nothing now: .*(could not renew|reclaimed)/);
  await expect(h2.requestPool({ ...POOL, pool: '10.71.0.0/24', subPool: null })).rejects.toThrow(UnavailableError);

  await h2.tick();
  await waitFor(() => kinds(seen, 'host.rejoined').length === 1, { what: 'h2 to register again' });
  expect(kinds(seen, 'host.fenced')).toMatchObject([{ host: 'h2', data: { epoch: 1, reclaimedBy: 'h1' } }]);
  // h1 took all three of its old addresses meanwhile: h2 says its containers with them must go.
  expect(kinds(seen, 'host.rejoined')).toMatchObject([{ host: 'h2', data: { epoch: 2, pools: [poolId], kept: 0 } }]);
  const lostNow = (kinds(seen, 'host.rejoined')[0]!.data as { lost: Array<{ address: string }> }).lost.map((a) => a.address);
  expect(lostNow.sort()).toEqual([...before].sort());
  expect(await hostRecord('h2')).toMatchObject({ state: 'live', epoch: 2 });
  expect((await h1.status({})).pools[0]!.holders).toEqual({ h1: 1, h2: 1 });

  const after = await many(h2, poolId, 3);
  // Live now: h1's and h2's new ones, all distinct (h2's old ones are no longer leased).
  expect(new Set([...h1Now, ...after]).size).toBe(h1Now.length + after.length);
  expect(before.some((a) => h1Now.includes(a))).toBe(true);
  // Its new leases and blocks carry the new epoch, and none is in a block reclaimed from it.
  const ls = await leases();
  const bs = await blocks();
  const h2Blocks = [...bs.entries()].filter(([, b]) => b.owner === 'h2');
  expect(h2Blocks.every(([, b]) => b.epoch === 2)).toBe(true);
  expect(h2Blocks.map(([k]) => k).some((k) => reclaimedBlocks.includes(k))).toBe(false);
  expect([...ls.values()].filter((l) => l.host === 'h2').map((l) => l.epoch)).toEqual([2, 2, 2]);
  const ownerOf = (a: string) => [...bs.entries()].find(([k]) => contains(parseCidr(blockCidr(k)), parseIpInCidr(`${a}/24`).ip))?.[1].owner;
  expect(after.map(ownerOf)).toEqual(['h2', 'h2', 'h2']);
});

test('a returning host that was the pool\'s last holder gets the pool back with its gateway and its containers\' addresses, none given to a new container', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h2.requestPool({ ...POOL, subPool: null });
  expect(await h2.requestAddress({ poolId, address: null, kind: 'gateway' })).toEqual({ address: '10.70.0.1/24' });
  expect(await many(h2, poolId, 2)).toEqual(['10.70.0.2', '10.70.0.3']);
  await advance(LEASE + 1, [h1]);
  // Its only holder reclaimed: the pool is gone, gateway and all.
  expect((await h1.status({})).pools).toEqual([]);
  expect((await leases()).size).toBe(0);

  await h2.tick();
  expect(await hostRecord('h2')).toMatchObject({ state: 'live', epoch: 2 });
  expect((await h2.status({})).pools).toEqual([expect.objectContaining({ poolId, gateway: '10.70.0.1', holders: { h2: 1 } })]);
  // Its gateway and its containers' addresses (nobody took them meanwhile) are leased again, under its new epoch.
  const byKey = [...(await leases()).values()];
  expect(byKey.map((l) => [l.host, l.kind, l.epoch])).toEqual([['h2', 'gateway', 2], ['h2', 'endpoint', 2], ['h2', 'endpoint', 2]]);
  expect(await many(h2, poolId, 2)).toEqual(['10.70.0.4', '10.70.0.5']);
});

test('rmpeer on two hosts at once reclaims once; the other says who did', async () => {
  const [h1, h2, h3] = [await host('h1'), await host('h2'), await host('h3')];
  const { poolId } = await h3.requestPool(POOL);
  await many(h3, poolId, 4);
  await h3.kill();

  // Not yet expired: refused without --force, and nothing changes.
  const live = await h1.rmpeer({ host: 'h3', force: false }).catch((e: unknown) => e);
  expect(live).toBeInstanceOf(ConflictError);
  expect((live as Error).message).toBe('host h3 is live (its lease runs 60 s more); if it is gone for good, pass --force');
  expect(await hostRecord('h3')).toMatchObject({ state: 'live' });

  const replies = await Promise.all([h1.rmpeer({ host: 'h3', force: true }), h2.rmpeer({ host: 'h3', force: true })]);
  const won = replies.filter((r) => r.outcome === 'reclaimed');
  expect(won).toHaveLength(1);
  const winner = replies.indexOf(won[0]!) === 0 ? 'h1' : 'h2';
  expect(won[0]).toMatchObject({ host: 'h3', epoch: 1, pools: [poolId], blocks: [{ poolId, block: '10.70.0.0/28' }] });
  expect(won[0]!.outcome === 'reclaimed' && won[0]!.addresses).toHaveLength(4);
  expect(replies.find((r) => r.outcome === 'already')).toMatchObject({ outcome: 'already', host: 'h3', by: winner });
  // h3 was the pool's only holder: the pool is gone with it.
  expect((await h1.status({})).pools).toEqual([]);
  expect([...(await leases()).keys()]).toEqual([]);
  expect(await h1.rmpeer({ host: 'h3', force: false })).toMatchObject({ outcome: 'already', by: winner });
});

test('rmpeer refuses the host it runs on and a host that never registered', async () => {
  const [h1] = [await host('h1'), await host('h2')];
  await expect(h1.rmpeer({ host: 'h1', force: true })).rejects.toThrow(new InvalidRequestError('host h1 is this host: run rmpeer on another host of the mesh'));
  await expect(h1.rmpeer({ host: 'nope', force: true })).rejects.toThrow(NotFoundError);
  expect(await hostRecord('h2')).toMatchObject({ state: 'live' });
});

test('status shows every host with its epoch and the time left on its lease', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  t += 20_000;
  await h1.tick();
  const { hosts } = await h1.status({});
  expect(hosts).toEqual([
    { host: 'h1', state: 'live', epoch: 1, renewedAt: now().toISOString(), leaseLeftMs: LEASE },
    { host: 'h2', state: 'live', epoch: 1, renewedAt: new Date(t - 20_000).toISOString(), leaseLeftMs: LEASE - 20_000 },
  ]);
  expect(h2.name).toBe('h2');
});

test('a host coming back exactly while it is reclaimed: one CAS decides, and either way no address is live twice', async () => {
  const outcomes = new Set<string>();
  for (let round = 0; round < 4; round++) {
    const [h1, h2] = [await host(`a${round}`), await host(`b${round}`)];
    const { poolId } = await h1.requestPool({ ...POOL, pool: `10.8${round}.0.0/24`, subPool: null });
    await h2.requestPool({ ...POOL, pool: `10.8${round}.0.0/24`, subPool: null });
    const b = await many(h2, poolId, 3);
    // At exactly the lease h2 is not yet expired; one more millisecond and it is, and now its
    // renewal and h1's reclaim of it race.
    await advance(LEASE, [h1]);
    t += 1;
    await Promise.all([h2.tick(), h1.tick()]);
    // Reclaimed first: h2 waited for the reclaim to be done, and registers again on its next tick.
    await h2.tick();
    const after = await hostRecord(h2.name);
    expect(after).toMatchObject({ state: 'live' });
    outcomes.add(after!.epoch === 2 ? 'reclaimed' : 'renewed');
    const ls = await leases();
    const mine = [...ls.entries()].filter(([, l]) => l.host === h2.name);
    // Either way its containers keep their addresses: renewed in time, or leased again under
    // epoch 2 after the reclaim (nobody took them in between).
    expect(mine.map(([, l]) => l.epoch ?? 1)).toEqual(b.map(() => after!.epoch));
    const got = [...(await many(h1, poolId, 3)), ...(await many(h2, poolId, 3))];
    expect(new Set(got).size).toBe(6);
  }
  // Which CAS lands first is up to the server; the test asserts only that each outcome is whole.
  expect(outcomes.size).toBeGreaterThan(0);
});

test("a returning host's containers: checkLeases names the addresses others took, and leases again those a half-done rejoin left free", async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  const { poolId } = await h1.requestPool({ ...POOL, subPool: null });
  await h2.requestPool({ ...POOL, subPool: null });
  const mine = await many(h2, poolId, 3);
  const query = { pools: [{ subnet: POOL.pool, addresses: mine }] };
  const states = async () => (await h2.checkLeases(query)).addresses.map((a) => `${a.address} ${a.state}${a.by ? ` ${a.by}` : ''}${a.adopted ? ' adopted' : ''}`);
  expect(await states()).toEqual(mine.map((a) => `${a} held`));

  // h2 is cut off beyond its lease; h1 reclaims it and gives one of its addresses to a container of its own.
  await advance(LEASE + 1, [h1]);
  await h1.requestAddress({ poolId, address: mine[0]!, kind: 'endpoint' });
  // Back, fenced, not registered again yet: the taken one is known at once, and a fenced host leases nothing.
  expect(await states()).toEqual([`${mine[0]} taken h1`, `${mine[1]} free`, `${mine[2]} free`]);

  await h2.tick();
  expect(await hostRecord('h2')).toMatchObject({ state: 'live', epoch: 2 });
  expect(await states()).toEqual([`${mine[0]} taken h1`, `${mine[1]} held`, `${mine[2]} held`]);

  // A rejoin that stopped before it leased everything again (a crash): the lease is missing, and
  // the next check takes it again, under the new epoch; nobody else had it meanwhile.
  const kv = await openBucket(client, Buckets.ipamLeases);
  await kv.delete(leaseKey(parseCidr(POOL.pool), parseIpInCidr(`${mine[2]}/24`).ip.value));
  expect(await states()).toEqual([`${mine[0]} taken h1`, `${mine[1]} held`, `${mine[2]} held adopted`]);
  expect([...(await leases()).values()].filter((l) => l.host === 'h2').map((l) => l.epoch)).toEqual([2, 2]);
  expect([...(await leases()).values()].filter((l) => l.host === 'h1')).toHaveLength(1);
});

/** `v4-0a460000-24.0a460010` → 10.70.0.16/28 (blocks of 16 addresses). */
function blockCidr(key: string): string {
  const hex = key.split('.')[1]!;
  const v = parseInt(hex, 16);
  return `${[v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.')}/28`;
}
