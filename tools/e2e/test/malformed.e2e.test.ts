import { request } from 'node:http';
import { Subjects } from '@weave/contracts';
import { ipamStateOfRecord, ProcessStack, useStack } from '../src';

/**
 * Hostile or broken input to the running services: the plugin socket and every NATS subject they
 * serve. Each gets an answer in its caller's format, nothing crashes, and no state changes.
 */
let stack: ProcessStack;
const scope = useStack((s) => (stack = s));

beforeAll(async () => {
  // Some real state, so "unchanged" means something.
  const net = await scope.network(stack.plugin, ['--subnet', '10.251.20.0/24']);
  await scope.run([`--net=${net}`]);
});

const snapshot = async () => ({ ipam: ipamStateOfRecord(await stack.ipam.status({})), netwire: await stack.netwire.status({}) });

function post(path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time, as a misbehaving client would open.
    const req = request({ socketPath: stack.socket, path, method: 'POST', agent: false, headers: { 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('error', reject);
    req.on('socket', (s) => s.on('error', () => {}));
    req.end(body);
  });
}

const ID = 'c'.repeat(64);
const pluginCases: Array<[string, string, RegExp]> = [
  ['/NetworkDriver.CreateEndpoint', '', /"Err":"weave: empty request/],
  ['/NetworkDriver.Join', '{', /"Err":"weave: .*not JSON/],
  ['/NetworkDriver.CreateNetwork', JSON.stringify({ NetworkID: 12 }), /"Err":"weave: invalid/],
  ['/NetworkDriver.DeleteEndpoint', JSON.stringify({ NetworkID: ID, EndpointID: ID }), /^\{\}$/],
  ['/NetworkDriver.CreateEndpoint', JSON.stringify({ NetworkID: ID, EndpointID: ID, Interface: { Address: '10.251.99.2/24' } }), /"Err":"weave: .*network/],
  ['/NetworkDriver.Join', JSON.stringify({ NetworkID: ID, EndpointID: ID, SandboxKey: '/x' }), /"Err":"weave: /],
  ['/IpamDriver.RequestAddress', JSON.stringify({ PoolID: 'weave:no-such-pool', Address: '' }), /"Error":"weave: /],
  ['/IpamDriver.ReleasePool', JSON.stringify({ PoolID: 'garbage' }), /"Error":"weave: /],
  ['/IpamDriver.RequestPool', JSON.stringify({ AddressSpace: 'weave-local', Pool: '10.251.20.0/24', V6: 'yes' }), /"Error":"weave: invalid/],
  ['/IpamDriver.RequestPool', 'x'.repeat(2 << 20), /"Err":"weave: request body larger/],
  ['/Nope.Nothing', '{}', /"Err":"weave: no such plugin method/],
];

test('the plugin socket answers every malformed request in Docker\'s format and changes nothing', async () => {
  const before = await snapshot();
  for (const [path, body, expected] of pluginCases) {
    const r = await post(path, body);
    expect({ path, body: r.body }).toEqual({ path, body: expect.stringMatching(expected) });
  }
  expect(await snapshot()).toEqual(before);
  expect(stack.isAlive('plugin-api')).toBe(true);
});

test('every NATS subject the services serve refuses garbage with an error reply and changes nothing', async () => {
  const before = await snapshot();
  const methods = {
    ipam: ['requestPool', 'releasePool', 'requestAddress', 'releaseAddress', 'status', 'bogus'],
    netwire: ['createNetwork', 'deleteNetwork', 'createEndpoint', 'join', 'leave', 'deleteEndpoint', 'status', 'bogus'],
  } as const;
  const payloads = ['', 'null', '[]', '{"poolId":7}', '{"networkId":"../../etc"}', '\u0000\u00ff', JSON.stringify({ extra: 'field', status: {} })];
  let replies = 0;
  for (const [svc, ms] of Object.entries(methods) as Array<['ipam' | 'netwire', readonly string[]]>) {
    for (const m of ms) {
      for (const p of payloads) {
        const reply = (await stack.nc.request(Subjects.rpc(stack.host, svc, m), p, { timeout: 5000 })).json<{ ok: boolean; error?: { code: string } }>();
        expect({ svc, m, p, reply }).toEqual({ svc, m, p, reply: { ok: false, error: expect.objectContaining({ code: 'invalid' }) } });
        replies++;
      }
    }
  }
  expect(replies).toBe(Object.values(methods).flat().length * payloads.length);
  expect(await snapshot()).toEqual(before);
  expect(stack.isAlive('ipam') && stack.isAlive('netwire')).toBe(true);
});
