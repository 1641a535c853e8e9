import { request } from 'node:http';
import { AddressSpaces, DockerOption } from '@weave/contracts';
import { freshId, type Fixture } from './targets';

/** The subnet of the fixture's network: inside 10.251.0.0/16 like the end-to-end suites', below their default range. */
const POOL = '10.251.21.0/24';

/**
 * Creates one network with one joined endpoint through the plugin socket, with the calls and
 * bodies Docker sends for `network create` and `run` (shared/reference/docker-plugin-protocol.md
 * §4.1, §4.2), so that "state unchanged" covers pools, leases, a bridge and a veth.
 */
export async function createFixture(socket: string, host: string, routerHost: string): Promise<Fixture> {
  const call = (method: string, body: unknown) => callPlugin(socket, method, body);
  const pool = (await call('IpamDriver.RequestPool', { AddressSpace: AddressSpaces.local, Pool: POOL, SubPool: '', Options: {}, V6: false })) as { PoolID: string; Pool: string };
  const gw = (await call('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: { [DockerOption.requestAddressType]: DockerOption.gatewayType } })) as { Address: string };
  const networkId = freshId(0x100);
  await call('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: { [DockerOption.generic]: {} },
    IPv4Data: [{ AddressSpace: AddressSpaces.local, Pool: pool.Pool, Gateway: gw.Address }],
    IPv6Data: [],
  });
  const ep = (await call('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: {} })) as { Address: string };
  const endpointId = freshId(0x200);
  await call('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: ep.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
  await call('NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/fuzz', Options: {} });
  return { host, routerHost, pool: pool.Pool, poolId: pool.PoolID, gateway: gw.Address, address: ep.Address, networkId, endpointId };
}

/** One plugin call as Docker makes it (JSON body, trailing newline); throws with the plugin's error. */
function callPlugin(socket: string, method: string, body: unknown): Promise<unknown> {
  const text = `${JSON.stringify(body)}\n`;
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', agent: false, headers: { 'Content-Length': Buffer.byteLength(text) } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => {
        const reply = JSON.parse(data) as { Err?: string; Error?: string };
        const err = reply.Err || reply.Error;
        if (res.statusCode !== 200 || err) reject(new Error(`${method} for the fuzz fixture failed: ${res.statusCode} ${err ?? data}`));
        else resolve(reply);
      });
    });
    req.on('error', reject);
    req.end(text);
  });
}
