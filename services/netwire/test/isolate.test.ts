import { planReisolate } from '../src/isolate';
import { containerVethName, hostVethName } from '../src/names';
import { endpointReq, fakeNetwire, networkSpec, newId } from './helpers';

/**
 * Endpoints whose address another host holds are taken off their network, on the fake kernel:
 * veth down and off the bridge, record marked, and nothing removed that Docker still expects.
 */
async function joined() {
  const t = fakeNetwire();
  const spec = networkSpec();
  const { bridge } = await t.netwire.createNetwork(spec);
  const a = endpointReq(spec.networkId);
  const b = endpointReq(spec.networkId, { address: '10.77.0.3/24' });
  for (const e of [a, b]) {
    await t.netwire.createEndpoint(e);
    await t.netwire.join({ networkId: spec.networkId, endpointId: e.endpointId, sandboxKey: '/var/run/docker/netns/x' });
    t.kernel.moveToContainer(containerVethName(e.endpointId));
  }
  const containerId = newId();
  const displaced = { networkId: spec.networkId, endpointId: a.endpointId, containerId, address: '10.77.0.2', takenBy: 'h2' };
  return { ...t, spec, bridge, a, b, containerId, displaced };
}

const link = (t: Awaited<ReturnType<typeof joined>>, endpointId: string) => t.kernel.links.get(hostVethName(endpointId))!;

it('takes the veth down and off the bridge, marks the record, says so once; the other endpoint is untouched', async () => {
  const t = await joined();
  expect(link(t, t.a.endpointId)).toMatchObject({ up: true, master: t.bridge });
  const r = await t.netwire.isolateEndpoints({ endpoints: [t.displaced] });
  expect(r).toEqual({ isolated: [{ networkId: t.spec.networkId, endpointId: t.a.endpointId, hostVeth: hostVethName(t.a.endpointId) }], already: 0, unknown: [] });
  expect(link(t, t.a.endpointId)).toMatchObject({ up: false, master: null });
  expect(link(t, t.b.endpointId)).toMatchObject({ up: true, master: t.bridge });
  // Nothing Docker expects is gone: the pair, the record.
  expect(t.kernel.links.has(containerVethName(t.a.endpointId))).toBe(true);
  expect(t.store.endpoints.get(t.a.endpointId)?.isolated).toMatchObject({ address: '10.77.0.2', takenBy: 'h2', containerId: t.containerId });
  expect(t.events.of('endpoint.isolated')).toEqual([{ networkId: t.spec.networkId, endpointId: t.a.endpointId, containerId: t.containerId, hostVeth: hostVethName(t.a.endpointId), address: '10.77.0.2', takenBy: 'h2' }]);
  const status = await t.netwire.status();
  expect(status.endpoints.find((e) => e.endpointId === t.a.endpointId)?.isolated).toMatchObject({ takenBy: 'h2' });
  expect(status.endpoints.find((e) => e.endpointId === t.b.endpointId)?.isolated).toBeUndefined();

  // Asked again (the next pass, before Docker disconnected it): checked again, announced once.
  await t.kernel.setUp(hostVethName(t.a.endpointId));
  expect(await t.netwire.isolateEndpoints({ endpoints: [t.displaced] })).toEqual({ isolated: [], already: 1, unknown: [] });
  expect(link(t, t.a.endpointId).up).toBe(false);
  expect(t.events.of('endpoint.isolated')).toHaveLength(1);
});

it('an endpoint netwire does not have, or of another network, is unknown and changes nothing', async () => {
  const t = await joined();
  const calls = t.kernel.calls.length;
  const gone = { ...t.displaced, endpointId: newId() };
  const elsewhere = { ...t.displaced, networkId: newId() };
  expect(await t.netwire.isolateEndpoints({ endpoints: [gone, elsewhere] })).toEqual({ isolated: [], already: 0, unknown: [gone.endpointId, elsewhere.endpointId] });
  expect(t.kernel.calls.length).toBe(calls);
});

it('reconcile after a restart keeps an isolated endpoint off its bridge, and takes it off again if it was put back', async () => {
  const t = await joined();
  await t.netwire.isolateEndpoints({ endpoints: [t.displaced] });
  await t.netwire.reconcile();
  expect(link(t, t.a.endpointId)).toMatchObject({ up: false, master: null });
  expect(link(t, t.b.endpointId)).toMatchObject({ up: true, master: t.bridge });
  // Someone put it back by hand.
  await t.kernel.setMaster(hostVethName(t.a.endpointId), t.bridge);
  await t.kernel.setUp(hostVethName(t.a.endpointId));
  const r = await t.netwire.reconcile();
  expect(link(t, t.a.endpointId)).toMatchObject({ up: false, master: null });
  expect(r.reattachedEndpoints).toEqual([]);
  expect(r.problems).toBe(0);
});

it("Docker's disconnect afterwards removes the endpoint as any other", async () => {
  const t = await joined();
  await t.netwire.isolateEndpoints({ endpoints: [t.displaced] });
  await t.netwire.leave({ networkId: t.spec.networkId, endpointId: t.a.endpointId });
  t.kernel.moveToHost(containerVethName(t.a.endpointId));
  await t.netwire.deleteEndpoint({ networkId: t.spec.networkId, endpointId: t.a.endpointId });
  await t.netwire.idle();
  await new Promise((r) => setImmediate(r));
  expect(t.store.endpoints.has(t.a.endpointId)).toBe(false);
  expect(t.kernel.links.has(hostVethName(t.a.endpointId))).toBe(false);
});

it('planReisolate: only isolated endpoints whose veth is up or on a bridge', () => {
  const ep = (hostVeth: string, isolated: boolean) => ({ hostVeth, isolated: isolated ? { at: '2026-01-01T00:00:00.000Z', address: '10.1.0.2', takenBy: 'h2', containerId: null } : null });
  const l = (name: string, up: boolean, master: string | null) => ({ name, kind: 'veth', master, mtu: 1500, mac: '', up, owner: 'h1' });
  const endpoints = [ep('v1', true), ep('v2', true), ep('v3', true), ep('v4', false), ep('v5', true)] as never[];
  const links = [l('v1', true, null), l('v2', false, 'br'), l('v3', false, null), l('v4', true, 'br')];
  expect(planReisolate(endpoints, links)).toEqual(['v1', 'v2']);
});
