import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { rpcClient, subscribeEvents } from '@weave/bus';
import { EventEnvelope, netwireRpc } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { useNats, waitFor } from '@weave/testing';
import { FakeKernel, LinuxKernel, RunningNetwire, startNetwire } from '../src';
import { containerVethName, hostVethName } from '../src/names';
import { endpointReq, networkSpec, newId } from './helpers';

/**
 * isolateEndpoints over a real nats-server: the request as plugin-api sends it, the record kept
 * in JetStream KV across a restart (reconcile then leaves the endpoint off its bridge), the event
 * on the bus; and the kernel command itself on a real veth, in a throwaway namespace.
 */
let nc: NatsConnection;
useNats((_, c) => (nc = c));
const running: RunningNetwire[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop();
});

test('an isolated endpoint stays off its bridge across a netwire restart, and status and the bus say why', async () => {
  const host = `h${randomBytes(3).toString('hex')}`;
  const kernel = new FakeKernel();
  const start = async () => {
    const s = await startNetwire({ nc, host, kernel, log: silentLogger(), mtu: null });
    running.push(s);
    return s;
  };
  const events: EventEnvelope[] = [];
  const sub = subscribeEvents(nc, (e) => events.push(e), () => undefined, `weave.events.${host}.netwire.>`);
  const first = await start();
  const client = rpcClient(nc, host, netwireRpc);
  const spec = networkSpec();
  const { bridge } = await client.createNetwork(spec);
  const ep = endpointReq(spec.networkId);
  await client.createEndpoint(ep);
  await client.join({ networkId: spec.networkId, endpointId: ep.endpointId, sandboxKey: '/var/run/docker/netns/c1' });
  kernel.moveToContainer(containerVethName(ep.endpointId));
  const containerId = newId();

  const req = { endpoints: [{ networkId: spec.networkId, endpointId: ep.endpointId, containerId, address: '10.77.0.2', takenBy: 'host2' }] };
  expect(await client.isolateEndpoints(req)).toEqual({ isolated: [{ networkId: spec.networkId, endpointId: ep.endpointId, hostVeth: hostVethName(ep.endpointId) }], already: 0, unknown: [] });
  await waitFor(() => events.some((e) => e.kind === 'endpoint.isolated'), { what: 'the endpoint.isolated event' });
  expect(events.find((e) => e.kind === 'endpoint.isolated')?.data).toEqual({ ...req.endpoints[0], hostVeth: hostVethName(ep.endpointId) });

  running.splice(running.indexOf(first), 1);
  await first.stop();
  await start();
  expect(kernel.links.get(hostVethName(ep.endpointId))).toMatchObject({ up: false, master: null });
  expect(kernel.links.get(bridge)?.up).toBe(true);
  const { endpoints } = await client.status({});
  expect(endpoints).toEqual([expect.objectContaining({ endpointId: ep.endpointId, present: true, isolated: expect.objectContaining({ address: '10.77.0.2', takenBy: 'host2', containerId }) })]);
  expect(await client.isolateEndpoints(req)).toEqual({ isolated: [], already: 1, unknown: [] });
  sub.unsubscribe();
});

const isRoot = process.getuid?.() === 0;
(isRoot ? test : test.skip)('on a real kernel: the host veth goes down and off its bridge, and the pair stays', async () => {
  const run = promisify(execFile);
  const ns = `wvt-${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  try {
    const k = new LinuxKernel({ netns: ns });
    await k.createBridge('wvbisolate000', { mtu: 1400, mac: '7a:57:0a:4d:00:00', owner: 'h1' });
    await k.setUp('wvbisolate000');
    await k.createVethPair('wvhisolate000', 'wvcisolate000', { mtu: 1400, peerMac: '02:42:0a:4d:00:02', owner: 'h1', master: 'wvbisolate000' });
    const show = async (name: string) => JSON.parse((await run('ip', ['-j', '-n', ns, 'link', 'show', name])).stdout)[0] as { flags: string[]; master?: string };
    expect(await show('wvhisolate000')).toMatchObject({ master: 'wvbisolate000', flags: expect.arrayContaining(['UP']) });
    await k.isolateLink('wvhisolate000');
    const after = await show('wvhisolate000');
    expect(after.master).toBeUndefined();
    expect(after.flags).not.toContain('UP');
    expect(await k.linkExists('wvcisolate000')).toBe(true);
    // Twice is fine: the next pass may ask again before Docker disconnected the container.
    await k.isolateLink('wvhisolate000');
  } finally {
    await run('ip', ['netns', 'del', ns]);
  }
});
