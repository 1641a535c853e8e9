import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { RpcHandlers, serveRpc } from '@weave/bus';
import { ipamRpc, netwireRpc } from '@weave/contracts';
import { ConflictError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { CONTENT_TYPE, parseSamples, scrape } from '@weave/metrics';
import { freePort, NatsServer, ServiceProcess, startNatsServer, startServiceProcess } from '@weave/testing';

/**
 * plugin-api as a process (its real entry point) on a real nats-server, with ipam and netwire
 * answering on NATS as the test says; Docker's calls go to its socket and /metrics is scraped.
 */
jest.setTimeout(60_000);

const HOST = 'metrics-test';
let nats: NatsServer;
let nc: NatsConnection;
let plugin: ServiceProcess | undefined;
let port: number;
const dir = mkdtempSync(join(tmpdir(), 'weave-plugin-metrics-'));
const socket = join(dir, 'weave.sock');

const ipam = {
  requestPool: async () => ({ poolId: 'weave:10.9.0.0/24', pool: '10.9.0.0/24', data: {} }),
  requestAddress: async () => {
    throw new ConflictError('10.9.0.50 is taken');
  },
  status: async () => ({ pools: [], hosts: [] }),
} as unknown as RpcHandlers<typeof ipamRpc>;
const netwire = { status: async () => ({ networks: [], endpoints: [] }) } as unknown as RpcHandlers<typeof netwireRpc>;

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  serveRpc(nc, HOST, ipamRpc, ipam, silentLogger());
  serveRpc(nc, HOST, netwireRpc, netwire, silentLogger());
  await nc.flush();
  port = await freePort();
  plugin = await startServiceProcess(
    'plugin-api',
    {
      WEAVE_HOST: HOST,
      WEAVE_NATS_URL: nats.url,
      WEAVE_PLUGIN_DIR: dir,
      WEAVE_PLUGIN_NAME: 'weave',
      WEAVE_CATALOGUE: 'off',
      // No Docker here: the reconciler's passes fail and are logged, which this test ignores.
      WEAVE_DOCKER_SOCKET: join(dir, 'no-docker.sock'),
      WEAVE_PLUGIN_API_METRICS_PORT: String(port),
      WEAVE_LOG_LEVEL: 'warn',
    },
    async () => (await scrape(port).catch(() => null))?.status === 200,
  );
});
afterAll(async () => {
  await plugin?.stop();
  await nc?.close();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function post(method: string, body: object): Promise<number> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(text) } }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject).end(text);
  });
}

const samples = async () => {
  const r = await scrape(port);
  expect(r.status).toBe(200);
  expect(r.headers['content-type']).toBe(CONTENT_TYPE);
  return parseSamples(r.body);
};

test('counts and times Docker calls per method and outcome', async () => {
  const before = await samples();
  expect(before[`weave_service_info{service="plugin-api",host="${HOST}"}`]).toBe(1);
  expect(before['weave_plugin_api_calls_total{method="IpamDriver.RequestPool",outcome="ok"}']).toBeUndefined();

  expect(await post('IpamDriver.RequestPool', { AddressSpace: 'weave-local', Pool: '10.9.0.0/24', SubPool: '', Options: {}, V6: false })).toBe(200);
  expect(await post('IpamDriver.RequestPool', { AddressSpace: 'weave-local', Pool: '10.9.0.0/24', SubPool: '', Options: {}, V6: false })).toBe(200);
  // Refused by ipam: Docker gets a 200 with an Error for the user.
  expect(await post('IpamDriver.RequestAddress', { PoolID: 'weave:10.9.0.0/24', Address: '10.9.0.50', Options: {} })).toBe(200);
  expect(await post('NoSuch.Method', {})).toBe(404);
  expect(await post('Made.Up.Again', {})).toBe(404);

  const after = await samples();
  expect(after).toMatchObject({
    'weave_plugin_api_calls_total{method="IpamDriver.RequestPool",outcome="ok"}': 2,
    'weave_plugin_api_calls_total{method="IpamDriver.RequestAddress",outcome="refused"}': 1,
    // Unknown paths share one series, whatever they are.
    'weave_plugin_api_calls_total{method="other",outcome="failed"}': 2,
    'weave_plugin_api_call_duration_seconds_count{method="IpamDriver.RequestPool"}': 2,
    'weave_plugin_api_call_duration_seconds_bucket{method="IpamDriver.RequestPool",le="+Inf"}': 2,
  });
  expect(after['weave_plugin_api_call_duration_seconds_sum{method="IpamDriver.RequestPool"}']).toBeGreaterThan(0);
});

test('serves GET /metrics only, and on loopback only', async () => {
  expect((await scrape(port, { method: 'POST' })).status).toBe(405);
  expect((await scrape(port, { path: '/' })).status).toBe(404);
  const other = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal);
  if (!other) return;
  const refused = await new Promise<boolean>((resolve) => {
    const s = tcpConnect(port, other.address);
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });
  expect(refused).toBe(true);
});
