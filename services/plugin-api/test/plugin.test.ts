import { request } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { ConflictError, ExhaustedError, NotFoundError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { Backends, routes } from '../src/driver';
import { listenOnSocket, MAX_BODY_BYTES, pluginServer } from '../src/server';
import { requestedMac, stickToMac, userMac } from '../src/sticky-macs';

const NID = 'a'.repeat(64);
const EID = 'b'.repeat(64);

/** Records every call; each method can be made to fail. */
function fakeBackends() {
  const calls: Array<[string, unknown]> = [];
  const failWith: Record<string, Error> = {};
  const stub = <R>(name: string, result: R) => async (req: unknown): Promise<R> => {
    calls.push([name, req]);
    const f = failWith[name];
    if (f) throw f;
    return result;
  };
  const backends = {
    ipam: {
      requestPool: stub('requestPool', { poolId: 'weave:10.9.0.0/24', pool: '10.9.0.0/24', data: {} }),
      releasePool: stub('releasePool', {}),
      requestAddress: stub('requestAddress', { address: '10.9.0.2/24' }),
      releaseAddress: stub('releaseAddress', {}),
      status: stub('ipamStatus', { pools: [] }),
    },
    netwire: {
      createNetwork: stub('createNetwork', { bridge: 'wvbaaaaaaaaaaa', mtu: 1450 }),
      deleteNetwork: stub('deleteNetwork', {}),
      createEndpoint: stub('createEndpoint', { mac: '02:42:0a:09:00:02' as string | null }),
      join: stub('join', { srcName: 'wvcbbbbbbbbbbb', gateway: '10.9.0.1' as string | null, gatewayV6: null }),
      leave: stub('leave', {}),
      deleteEndpoint: stub('deleteEndpoint', {}),
      status: stub('netwireStatus', { networks: [], endpoints: [] }),
    },
  } as unknown as Backends;
  return { backends, calls, failWith };
}

let dir: string;
let socket: string;
let server: Server;
let fake: ReturnType<typeof fakeBackends>;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weave-plugin-'));
  socket = join(dir, 'weave.sock');
  fake = fakeBackends();
  server = pluginServer(routes(fake.backends), silentLogger());
  await listenOnSocket(server, socket);
});
afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

function post(method: string, body: string | object = ''): Promise<{ status: number; json: any }> {
  const text = typeof body === 'string' ? body : JSON.stringify(body) + '\n';
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', headers: { Host: '', 'Content-Length': Buffer.byteLength(text) } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) }));
    });
    req.on('error', reject);
    // The server may answer (413) before the client has written all of a huge body; the late
    // EPIPE on the client's socket is expected then and is not the outcome under test.
    req.on('socket', (s) => s.on('error', () => {}));
    req.end(text);
  });
}

/** Writes bytes as they are and reads until the server closes. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socket);
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
    sock.write(bytes);
  });
}

describe('handshake', () => {
  it.each([
    ['Plugin.Activate', { Implements: ['NetworkDriver', 'IpamDriver'] }],
    ['NetworkDriver.GetCapabilities', { Scope: 'local' }],
    ['IpamDriver.GetCapabilities', { RequiresMACAddress: false, RequiresRequestReplay: false }],
    ['IpamDriver.GetDefaultAddressSpaces', { LocalDefaultAddressSpace: 'weave-local', GlobalDefaultAddressSpace: 'weave-global' }],
  ])('%s answers with an empty body', async (method, reply) => {
    expect(await post(method)).toEqual({ status: 200, json: reply });
  });

  it('makes the socket root-only', () => {
    expect(statSync(socket).mode & 0o777).toBe(0o600);
  });
});

describe('ipam calls', () => {
  it('maps RequestPool both ways, tolerating compose null Options', async () => {
    const r = await post('IpamDriver.RequestPool', { AddressSpace: 'weave-local', Pool: '', SubPool: '', Options: null, V6: false });
    expect(r).toEqual({ status: 200, json: { PoolID: 'weave:10.9.0.0/24', Pool: '10.9.0.0/24', Data: {} } });
    expect(fake.calls[0]).toEqual(['requestPool', { addressSpace: 'weave-local', pool: null, subPool: null, v6: false, options: {} }]);
  });

  it('tells gateway requests apart', async () => {
    await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '10.9.0.50', Options: null });
    expect(fake.calls.map((c) => c[1])).toEqual([
      { poolId: 'p', address: null, kind: 'gateway' },
      { poolId: 'p', address: '10.9.0.50', kind: 'endpoint' },
    ]);
  });

  it('reports refusals in the Error field, which is the one Docker reads for IPAM', async () => {
    fake.failWith.requestAddress = new ConflictError('address 10.9.0.50 is already in use in 10.9.0.0/24');
    const r = await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '10.9.0.50' });
    expect(r).toEqual({ status: 200, json: { Error: 'weave: address 10.9.0.50 is already in use in 10.9.0.0/24' } });
    fake.failWith.requestAddress = new ExhaustedError('no free address');
    expect((await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '' })).json.Error).toMatch(/no free address/);
  });

  it('refuses bad field types with Error and calls nothing', async () => {
    const r = await post('IpamDriver.ReleaseAddress', { PoolID: 'p', Address: 'not-an-ip' });
    expect(r.status).toBe(200);
    expect(r.json.Error).toMatch(/invalid IpamDriver.ReleaseAddress request.*Address/);
    expect(fake.calls).toEqual([]);
  });
});

describe('network calls', () => {
  const createNetwork = (space = 'weave-local', extra: object = {}) => ({
    NetworkID: NID,
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'com.docker.network.driver.mtu': '1400', x: 'y' }, ...extra },
    IPv4Data: [{ AddressSpace: space, Gateway: '10.9.0.1/24', Pool: '10.9.0.0/24' }],
    IPv6Data: [],
  });

  it('creates the network with its options', async () => {
    expect(await post('NetworkDriver.CreateNetwork', createNetwork('weave-local', { 'com.docker.network.internal': true }))).toEqual({ status: 200, json: {} });
    expect(fake.calls[0]).toEqual([
      'createNetwork',
      {
        networkId: NID,
        ipv4: [{ pool: '10.9.0.0/24', gateway: '10.9.0.1/24' }],
        ipv6: [],
        internal: true,
        mtu: 1400,
        options: { 'com.docker.network.driver.mtu': '1400', x: 'y' },
      },
    ]);
  });

  it("refuses Docker's default IPAM and says how to create the network", async () => {
    const r = await post('NetworkDriver.CreateNetwork', createNetwork('LocalDefault'));
    expect(r.json.Err).toMatch(/--ipam-driver weave/);
    expect(fake.calls).toEqual([]);
  });

  it('refuses a nonsense MTU', async () => {
    const body = createNetwork();
    body.Options['com.docker.network.generic']['com.docker.network.driver.mtu'] = '12';
    expect((await post('NetworkDriver.CreateNetwork', body)).json.Err).toMatch(/MTU must be a whole number/);
  });

  it('carries multicast beyond the link only for -o weave.multicast=true, and refuses other values', async () => {
    const withMulticast = (value: string) => {
      const body = createNetwork();
      (body.Options['com.docker.network.generic'] as Record<string, string>)['weave.multicast'] = value;
      return body;
    };
    for (const [value, on] of [['true', true], ['True', true], ['1', true], ['false', false], ['', false]] as const) {
      fake.calls.length = 0;
      expect(await post('NetworkDriver.CreateNetwork', withMulticast(value))).toEqual({ status: 200, json: {} });
      expect({ value, multicast: (fake.calls[0]![1] as { multicast?: boolean }).multicast }).toEqual({ value, multicast: on || undefined });
    }
    fake.calls.length = 0;
    expect((await post('NetworkDriver.CreateNetwork', withMulticast('yes'))).json.Err).toMatch(/-o weave.multicast=yes: must be true or false/);
    expect(fake.calls).toEqual([]);
  });

  it('fills the MAC only when Docker left it empty', async () => {
    const r1 = await post('NetworkDriver.CreateEndpoint', { NetworkID: NID, EndpointID: EID, Interface: { Address: '10.9.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: {} });
    expect(r1.json).toEqual({ Interface: { MacAddress: '02:42:0a:09:00:02' } });
    (fake.backends.netwire as any).createEndpoint = async () => ({ mac: null });
    const r2 = await post('NetworkDriver.CreateEndpoint', { NetworkID: NID, EndpointID: EID, Interface: { Address: '10.9.0.2/24', MacAddress: '02:42:aa:bb:cc:dd' } });
    expect(r2.json).toEqual({});
  });

  it('returns the gateway from Join, and none on internal networks', async () => {
    const join = { NetworkID: NID, EndpointID: EID, SandboxKey: '/var/run/docker/netns/x', Options: {} };
    expect((await post('NetworkDriver.Join', join)).json).toEqual({ InterfaceName: { SrcName: 'wvcbbbbbbbbbbb', DstPrefix: 'eth' }, Gateway: '10.9.0.1' });
    (fake.backends.netwire as any).join = async () => ({ srcName: 'wvcbbbbbbbbbbb', gateway: null, gatewayV6: null });
    expect((await post('NetworkDriver.Join', join)).json).toEqual({ InterfaceName: { SrcName: 'wvcbbbbbbbbbbb', DstPrefix: 'eth' }, DisableGatewayService: true });
  });

  it('answers EndpointOperInfo itself, without a round trip to netwire', async () => {
    expect(await post('NetworkDriver.EndpointOperInfo', { NetworkID: NID, EndpointID: EID })).toEqual({ status: 200, json: { Value: {} } });
    expect(fake.calls).toEqual([]);
  });

  it('passes service errors on in Err', async () => {
    fake.failWith.createEndpoint = new NotFoundError(`network ${NID} is not known to netwire`);
    const r = await post('NetworkDriver.CreateEndpoint', { NetworkID: NID, EndpointID: EID, Interface: { Address: '10.9.0.2/24' } });
    expect(r).toEqual({ status: 200, json: { Err: expect.stringContaining('is not known to netwire') } });
  });
});

describe('malformed input', () => {
  it.each(['NetworkDriver.CreateEndpoint', 'NetworkDriver.Join', 'IpamDriver.RequestAddress', 'IpamDriver.RequestPool'])(
    'rejects the empty-body retry of %s with 400 and touches nothing',
    async (method) => {
      const r = await post(method, '');
      expect(r.status).toBe(400);
      expect(r.json.Err).toMatch(/empty request/);
      expect(fake.calls).toEqual([]);
    },
  );

  it.each([
    ['not JSON', 'NetworkDriver.Join', '{"NetworkID":', 400, /not JSON/],
    ['wrong id shape', 'NetworkDriver.Leave', { NetworkID: 'short', EndpointID: EID }, 200, /NetworkID/],
    ['wrong type', 'NetworkDriver.DeleteNetwork', { NetworkID: 7 }, 200, /NetworkID/],
    ['array body', 'NetworkDriver.DeleteEndpoint', [1, 2], 200, /invalid/],
    ['bad CIDR', 'IpamDriver.RequestPool', { AddressSpace: 'weave-local', Pool: '10.0.0.1/8' }, 200, /Pool/],
  ])('%s', async (_name, method, body, status, pattern) => {
    const r = await post(method, body as any);
    expect(r.status).toBe(status);
    expect(JSON.stringify(r.json)).toMatch(pattern);
    expect(fake.calls).toEqual([]);
  });

  it('rejects an oversized body with 413', async () => {
    const r = await post('NetworkDriver.CreateNetwork', 'x'.repeat(MAX_BODY_BYTES + 10));
    expect(r.status).toBe(413);
    expect(fake.calls).toEqual([]);
  });

  it('answers unknown methods with 404 and a JSON body', async () => {
    const r = await post('NetworkDriver.AllocateNetwork', { NetworkID: NID });
    expect(r.status).toBe(404);
    expect(r.json.Err).toMatch(/no such plugin method/);
  });

  it('answers an unknown method only once its body is read, so a caller still writing gets the answer', async () => {
    const sock = connect(socket);
    let got = '';
    sock.on('data', (d) => (got += d.toString()));
    const closed = new Promise((r) => sock.on('close', r));
    sock.write('POST /Nope.Nothing HTTP/1.1\r\nContent-Length: 10\r\nConnection: close\r\n\r\n12345');
    // Once a later request is answered, the server has seen the first one's head too.
    expect((await post('Plugin.Activate')).status).toBe(200);
    expect(got).toBe('');
    sock.end('67890');
    await closed;
    expect(got).toMatch(/^HTTP\/1.1 404 [^]*no such plugin method/);
  });

  it('answers paths naming inherited properties with 404, not as methods', async () => {
    for (const method of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const r = await post(method, {});
      expect({ method, status: r.status, err: r.json.Err }).toEqual({ method, status: 404, err: expect.stringMatching(/no such plugin method/) });
    }
  });

  it('answers bytes that are not HTTP in Docker\'s error format', async () => {
    for (const [bytes, status] of [
      ['POST /IpamDriver.RequestPool HTTP/1.1\r\nContent-Length: abc\r\n\r\n', 400],
      ['hello\r\n\r\n', 400],
      ['POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: \r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n', 400],
      [`POST /IpamDriver.RequestPool HTTP/1.1\r\nX: ${'a'.repeat(100_000)}\r\n\r\n`, 431],
    ] as const) {
      const answer = await raw(bytes);
      expect(answer).toMatch(new RegExp(`^HTTP/1.1 ${status} [^]*\r\n\r\n\\{"Err":"weave: malformed HTTP request`));
    }
    expect(fake.calls).toEqual([]);
  });

  it('serves a request without a Host header like any other', async () => {
    const answer = await raw('POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1.1 200 [^]*"Implements"/);
  });

  it('keeps serving after all that', async () => {
    expect((await post('Plugin.Activate')).status).toBe(200);
  });
});

describe('addresses that stick to a MAC of the container\'s own', () => {
  const stuck: Array<[string, string]> = [];
  beforeEach(async () => {
    stuck.length = 0;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    server = pluginServer(routes({ ...fake.backends, sticky: async (address, mac) => void stuck.push([address, mac]) }), silentLogger());
    await listenOnSocket(server, socket);
  });
  // As dockerd 20.10.24 sent them: a MAC it made up, and the user's 02:42:aa:bb:cc:dd (base64 AkKqu8zd).
  const MADE_UP = '02:42:9f:4c:50:b7';
  const endpoint = (mac: string, options: object = {}, v6 = '') => ({
    NetworkID: NID,
    EndpointID: EID,
    Interface: { Address: '10.9.0.2/24', AddressIPv6: v6, MacAddress: mac },
    Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [], ...options },
  });

  it('asks Docker for each endpoint\'s MAC', async () => {
    expect(await post('IpamDriver.GetCapabilities')).toEqual({ status: 200, json: { RequiresMACAddress: true, RequiresRequestReplay: false } });
  });

  it('passes the MAC of RequestAddress on to ipam, lowercase, for endpoints only', async () => {
    await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '', Options: { 'com.docker.network.endpoint.macaddress': '02:42:AA:BB:CC:DD' } });
    await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '10.9.0.50', Options: { 'com.docker.network.endpoint.macaddress': MADE_UP } });
    await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '10.9.0.200', Options: null });
    expect(fake.calls.map((c) => c[1])).toEqual([
      { poolId: 'p', address: null, kind: 'endpoint', mac: '02:42:aa:bb:cc:dd' },
      { poolId: 'p', address: '10.9.0.50', kind: 'endpoint', mac: MADE_UP },
      { poolId: 'p', address: null, kind: 'gateway' },
      { poolId: 'p', address: '10.9.0.200', kind: 'endpoint' },
    ]);
  });

  it('refuses a MAC option that is no MAC, and calls nothing', async () => {
    const r = await post('IpamDriver.RequestAddress', { PoolID: 'p', Address: '', Options: { 'com.docker.network.endpoint.macaddress': 'AkKqu8zd' } });
    expect(r).toEqual({ status: 200, json: { Error: expect.stringMatching(/is not a MAC address: "AkKqu8zd"/) } });
    expect(fake.calls).toEqual([]);
  });

  it('makes the addresses of an endpoint stick to the MAC when it is the user\'s (the base64 option), not when Docker made it up', async () => {
    await post('NetworkDriver.CreateEndpoint', endpoint(MADE_UP));
    expect(stuck).toEqual([]);
    const r = await post('NetworkDriver.CreateEndpoint', endpoint('02:42:aa:bb:cc:dd', { 'com.docker.network.endpoint.macaddress': 'AkKqu8zd' }, 'fd00:9::2/64'));
    expect(r.status).toBe(200);
    expect(stuck).toEqual([
      ['10.9.0.2/24', '02:42:aa:bb:cc:dd'],
      ['fd00:9::2/64', '02:42:aa:bb:cc:dd'],
    ]);
    // An option that names other bytes than the MAC does not add up: nothing sticks.
    await post('NetworkDriver.CreateEndpoint', endpoint('02:42:aa:bb:cc:de', { 'com.docker.network.endpoint.macaddress': 'AkKqu8zd' }));
    expect(stuck).toHaveLength(2);
  });
});

describe('sticky-macs', () => {
  it.each([
    [{}, null],
    [{ 'com.docker.network.endpoint.macaddress': '' }, null],
    [{ 'com.docker.network.endpoint.macaddress': '02:42:AA:bb:CC:dd' }, '02:42:aa:bb:cc:dd'],
  ])('requestedMac(%j) is %j', (options, mac) => {
    expect(requestedMac(options)).toBe(mac);
  });

  it.each([
    ['02:42:aa:bb:cc:dd', { 'com.docker.network.endpoint.macaddress': 'AkKqu8zd' }, '02:42:aa:bb:cc:dd'],
    ['02:42:AA:BB:CC:DD', { 'com.docker.network.endpoint.macaddress': 'AkKqu8zd' }, '02:42:aa:bb:cc:dd'],
    ['02:42:aa:bb:cc:dd', {}, null],
    ['', { 'com.docker.network.endpoint.macaddress': 'AkKqu8zd' }, null],
    ['02:42:aa:bb:cc:dd', { 'com.docker.network.endpoint.macaddress': 42 }, null],
    ['02:42:aa:bb:cc:dd', { 'com.docker.network.endpoint.macaddress': '!!!' }, null],
  ])('userMac(%j, %j) is %j', (mac, options, expected) => {
    expect(userMac({ Interface: { MacAddress: mac }, Options: options })).toBe(expected);
  });

  it('stickToMac never fails the endpoint: a refusal or an ipam that does not answer is logged', async () => {
    const lines: string[] = [];
    const log = { ...silentLogger(), info: (_o: unknown, m: string) => void lines.push(`info ${m}`), warn: (_o: unknown, m: string) => void lines.push(`warn ${m}`) } as never;
    const refused = stickToMac({ stickToMac: async () => ({ sticky: false, reason: 'no endpoint of this host has that address' }) }, log);
    await expect(refused('10.9.0.2/24', '02:42:aa:bb:cc:dd')).resolves.toBeUndefined();
    const down = stickToMac({ stickToMac: async () => Promise.reject(new Error('no responder for stickToMac')) }, log);
    await expect(down('10.9.0.2/24', '02:42:aa:bb:cc:dd')).resolves.toBeUndefined();
    expect(lines).toEqual([
      'info address 10.9.0.2/24 does not stick to MAC 02:42:aa:bb:cc:dd: no endpoint of this host has that address',
      expect.stringMatching(/^warn address 10.9.0.2\/24 could not be made to stick to MAC 02:42:aa:bb:cc:dd; .*no responder for stickToMac/),
    ]);
  });
});
