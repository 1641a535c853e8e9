import { createServer, request, Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@weave/log';
import { SocketDockerEngine } from '../src/catalogue/docker-engine';
import { dockerPoolView } from '../src/docker-pools';
import { Backends, routes } from '../src/driver';
import { listenOnSocket, pluginServer } from '../src/server';

/**
 * Docker's RequestPool and ReleasePool name no network: plugin-api sends ipam this host's Docker
 * networks on our IPAM along with them, read from Docker's `GET /networks`.
 */
const FOO = { id: 'f'.repeat(64), name: 'weave:foo', subnets: ['10.40.0.0/24', 'fd40::/64'] };

/** `GET /networks` as dockerd 20.10 answers it, trimmed: ours, a bridge on our IPAM, and Docker's own. */
const listing = [
  { Name: 'weave:foo', Id: FOO.id, Driver: 'weave', IPAM: { Driver: 'weave', Options: {}, Config: [{ Subnet: '10.40.0.0/24', Gateway: '10.40.0.1' }, { Subnet: 'fd40::/64' }] } },
  { Name: 'br', Id: 'b'.repeat(64), Driver: 'bridge', IPAM: { Driver: 'weave', Options: null, Config: [{ Subnet: '10.41.0.0/24' }] } },
  { Name: 'host', Id: 'c'.repeat(64), Driver: 'host', IPAM: { Driver: 'default', Options: null, Config: [] } },
  { Name: 'other', Id: 'd'.repeat(64), Driver: 'weave2', IPAM: { Driver: 'weave2', Options: null, Config: [{ Subnet: '10.42.0.0/24' }] } },
];

let dir: string;
let server: Server | null = null;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'weave-docker-pools-'))));
afterEach(async () => {
  server?.closeAllConnections();
  if (server) await new Promise((r) => server!.close(r));
  server = null;
  rmSync(dir, { recursive: true, force: true });
});

/** A fake dockerd answering `GET /networks` with `body`, or never. */
async function fakeDockerd(body: unknown | 'hang'): Promise<SocketDockerEngine> {
  const socket = join(dir, 'docker.sock');
  server = createServer((req, res) => {
    if (body === 'hang') return;
    res.setHeader('Content-Type', 'application/json');
    res.end(req.url === '/networks' ? JSON.stringify(body) : '{}');
  });
  await new Promise<void>((r) => server!.listen(socket, r));
  return new SocketDockerEngine(socket);
}

describe("Docker's networks on our IPAM", () => {
  it('are every network with our IPAM driver, whatever its network driver, with its subnets', async () => {
    const engine = await fakeDockerd(listing);
    expect(await engine.ipamNetworks('weave', 1000)).toEqual([FOO, { id: 'b'.repeat(64), name: 'br', subnets: ['10.41.0.0/24'] }]);
  });

  it('a listing that does not parse fails, rather than let ipam act on part of it', async () => {
    const engine = await fakeDockerd([{ ...listing[0], IPAM: { Driver: 'weave', Config: [{ Subnet: '10.40.0.1/24' }] } }]);
    await expect(engine.ipamNetworks('weave', 1000)).rejects.toThrow(/CIDR/);
  });

  it('a dockerd that does not answer is not waited for', async () => {
    const engine = await fakeDockerd('hang');
    const t0 = Date.now();
    await expect(engine.ipamNetworks('weave', 200)).rejects.toThrow(/did not answer within 200 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('the view sent to ipam', () => {
  const now = () => new Date('2026-11-29T12:00:00.000Z');

  it("is the listing with reconciliation's bound: the listing's start less the grace", async () => {
    const view = dockerPoolView({ docker: { ipamNetworks: async () => [FOO] }, driver: 'weave', graceMs: 60_000, log: silentLogger(), now });
    expect(await view()).toEqual({ networks: [FOO], olderThan: '2026-11-29T11:59:00.000Z' });
  });

  it('is null when Docker could not be read, so ipam decides without it', async () => {
    const failing = dockerPoolView({ docker: { ipamNetworks: async () => Promise.reject(new Error('ECONNREFUSED')) }, driver: 'weave', graceMs: 60_000, log: silentLogger(), now });
    expect(await failing()).toBeNull();
    const bad = dockerPoolView({ docker: { ipamNetworks: async () => [{ ...FOO, id: 'not-an-id' }] }, driver: 'weave', graceMs: 60_000, log: silentLogger(), now });
    expect(await bad()).toBeNull();
  });
});

describe('RequestPool and ReleasePool', () => {
  const view = { networks: [FOO], olderThan: '2026-11-29T11:59:00.000Z' };

  async function plugin(lookups: { n: number }) {
    const calls: Array<[string, unknown]> = [];
    const backends = {
      ipam: {
        requestPool: async (r: unknown) => (calls.push(['requestPool', r]), { poolId: 'weave:10.9.0.0/24', pool: '10.9.0.0/24', data: {} }),
        releasePool: async (r: unknown) => (calls.push(['releasePool', r]), {}),
      },
      netwire: {},
      dockerPools: async () => (lookups.n++, view),
    } as unknown as Backends;
    const socket = join(dir, 'weave.sock');
    server = pluginServer(routes(backends), silentLogger());
    await listenOnSocket(server, socket);
    const post = (method: string, body: object) =>
      new Promise<unknown>((resolve, reject) => {
        const text = JSON.stringify(body);
        const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(text) } }, (res) => {
          let data = '';
          res.on('data', (c) => (data += c));
          res.on('end', () => resolve(JSON.parse(data)));
        });
        req.on('error', reject);
        req.end(text);
      });
    return { calls, post };
  }

  it('carry Docker\'s list to ipam for a given subnet and for a release; a default subnet needs none', async () => {
    const lookups = { n: 0 };
    const { calls, post } = await plugin(lookups);
    await post('IpamDriver.RequestPool', { AddressSpace: 'weave-local', Pool: '', SubPool: '', Options: {}, V6: false });
    expect(lookups.n).toBe(0);
    await post('IpamDriver.RequestPool', { AddressSpace: 'weave-local', Pool: '10.9.0.0/24', SubPool: '', Options: {}, V6: false });
    expect(await post('IpamDriver.ReleasePool', { PoolID: 'weave:10.9.0.0/24' })).toEqual({});
    expect(calls).toEqual([
      ['requestPool', { addressSpace: 'weave-local', pool: null, subPool: null, v6: false, options: {} }],
      ['requestPool', { addressSpace: 'weave-local', pool: '10.9.0.0/24', subPool: null, v6: false, options: {}, docker: view }],
      ['releasePool', { poolId: 'weave:10.9.0.0/24', docker: view }],
    ]);
    expect(lookups.n).toBe(2);
  });
});
