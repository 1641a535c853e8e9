import { connect, NatsConnection } from '@nats-io/transport-node';
import { rpcClient } from '@weave/bus';
import { ipamRpc } from '@weave/contracts';
import { ConflictError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { parseSamples, Registry, rpcCallMetrics, serviceRegistry } from '@weave/metrics';
import { parseCidr } from '@weave/netaddr';
import { NatsServer, startNatsServer } from '@weave/testing';
import { StaticRoutes } from '../src/host-routes';
import { instrumentStore } from '../src/metrics';
import { startIpam } from '../src/service';
import type { BlockRecord } from '../src/core/records';
import { memoryStore, MemoryTable } from '../src/store-memory';
import { openIpamStore, Table } from '../src/store';

/** ipam wired as main.ts wires it (instrumented store, timed RPCs), on a real nats-server. */
jest.setTimeout(30_000);

const log = silentLogger();
let server: NatsServer;
const conns: NatsConnection[] = [];
const stops: Array<() => Promise<void>> = [];

beforeEach(async () => {
  server = await startNatsServer();
});
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  for (const nc of conns.splice(0)) await nc.close();
  await server.stop();
});

const conn = async () => {
  const nc = await connect({ servers: server.url });
  conns.push(nc);
  return nc;
};

async function host(name: string): Promise<{ metrics: Registry; client: ReturnType<typeof rpcClient<typeof ipamRpc>> }> {
  const nc = await conn();
  const metrics = serviceRegistry('ipam', name);
  const running = await startIpam({
    nc,
    host: name,
    log,
    routes: new StaticRoutes(),
    config: { defaultRange: parseCidr('10.32.0.0/12'), defaultPrefix: 24, blockSize: 16 },
    replicas: 1,
    store: instrumentStore(await openIpamStore(nc, 1, log), metrics),
    rpcMetrics: rpcCallMetrics(metrics, 'ipam'),
  });
  stops.push(running.stop);
  return { metrics, client: rpcClient(await conn(), name, ipamRpc) };
}

const samplesOf = async (r: Registry) => parseSamples(await r.text());

test('pools, blocks by owner, leases by host and kind, hosts, and RPCs by method and outcome', async () => {
  const h1 = await host('h1');
  const h2 = await host('h2');
  const req = { addressSpace: 'weave-local', pool: '10.99.0.0/24', subPool: null, v6: false, options: {} };
  const { poolId } = await h1.client.requestPool(req);
  await h2.client.requestPool(req);
  await h1.client.requestAddress({ poolId, address: null, kind: 'gateway' });
  await h1.client.requestAddress({ poolId, address: null, kind: 'endpoint' });
  await h2.client.requestAddress({ poolId, address: null, kind: 'endpoint' });
  await h2.client.requestAddress({ poolId, address: '10.99.0.50', kind: 'endpoint' });
  await expect(h1.client.requestAddress({ poolId, address: '10.99.0.50', kind: 'endpoint' })).rejects.toBeInstanceOf(ConflictError);

  const s = await samplesOf(h1.metrics);
  expect(s).toMatchObject({
    'weave_service_info{service="ipam",host="h1"}': 1,
    weave_ipam_pools: 1,
    // Mesh-wide, as h1's mirrors have it: each host claimed a block of 16 for its dynamic address.
    'weave_ipam_blocks{owner="h1"}': 1,
    'weave_ipam_blocks{owner="h2"}': 1,
    'weave_ipam_leases{host="h1",kind="gateway"}': 1,
    'weave_ipam_leases{host="h1",kind="endpoint"}': 1,
    'weave_ipam_leases{host="h2",kind="endpoint"}': 2,
    'weave_ipam_host_epoch{host="h1",state="live"}': 1,
    'weave_ipam_host_epoch{host="h2",state="live"}': 1,
    'weave_ipam_rpc_calls_total{method="requestPool",outcome="ok"}': 1,
    'weave_ipam_rpc_calls_total{method="requestAddress",outcome="ok"}': 2,
    'weave_ipam_rpc_calls_total{method="requestAddress",outcome="conflict"}': 1,
    'weave_ipam_rpc_duration_seconds_count{method="requestAddress"}': 3,
  });
  expect(s['weave_ipam_host_renewed_timestamp_seconds{host="h2"}']).toBeCloseTo(Date.now() / 1000, -2);
});

test('compare-and-set conflicts are counted by table and operation', async () => {
  const nc = await conn();
  const metrics = serviceRegistry('ipam', 'h1');
  const store = instrumentStore(await openIpamStore(nc, 1, log), metrics);
  stops.push(() => store.close());
  // Another process's view of the same buckets, writing in between.
  const other = await openIpamStore(await conn(), 1, log);
  stops.push(() => other.close());
  const block = { owner: 'h1', epoch: 1, claimedAt: new Date().toISOString(), gen: 'g1' };
  const key = 'v4-0a630000-24.0a630000';

  const first = await store.blocks.create(key, block);
  expect(first).not.toBeNull();
  expect(await other.blocks.create(key, { ...block, owner: 'h2' })).toBeNull();
  expect(await store.blocks.create(key, block)).toBeNull();

  await other.blocks.mutate(key, (cur) => ({ change: { put: { ...cur!, gen: 'g2' } }, result: null }));
  expect(await store.blocks.deleteAt(key, first!)).toBe(false);

  expect(await samplesOf(metrics)).toMatchObject({
    'weave_ipam_kv_conflicts_total{table="blocks",op="create"}': 1,
    'weave_ipam_kv_conflicts_total{table="blocks",op="delete"}': 1,
  });
});

test('a mutation decided again on a fresh read is a conflict', async () => {
  // What kvMutateWithRevision does when its compare-and-set loses: read again, decide again.
  const base = memoryStore();
  const blocks = base.blocks as MemoryTable<BlockRecord>;
  const losesOnce: Table<BlockRecord> = {
    name: blocks.name,
    get: (k) => blocks.get(k),
    create: (k, v) => blocks.create(k, v),
    deleteAt: (k, r) => blocks.deleteAt(k, r),
    mutate: (k, decide) => {
      decide(null);
      return blocks.mutate(k, decide);
    },
  };
  const metrics = serviceRegistry('ipam', 'h1');
  const store = instrumentStore({ ...base, blocks: losesOnce }, metrics);
  await store.blocks.mutate('k', () => ({ change: { keep: true }, result: null }));
  await store.leases.mutate('k', () => ({ change: { keep: true }, result: null }));
  const s = await samplesOf(metrics);
  expect(s['weave_ipam_kv_conflicts_total{table="blocks",op="mutate"}']).toBe(1);
  expect(s['weave_ipam_kv_conflicts_total{table="leases",op="mutate"}']).toBeUndefined();
});
