import { bridgeName, EndpointRecord, hostVethName, NetworkRecord, planEndpointSweep, planNetworkSweep } from '../src';
import { endpointReq, fakeNetwire, networkSpec, newId } from './helpers';

/**
 * Reconciliation against Docker: which endpoints of a network go. Docker was listed from 12:00:00
 * with a one-minute grace, so `olderThan` is 11:59:00; this netwire started at 10:00:00.
 */
const olderThan = new Date('2026-11-29T11:59:00.000Z');
const unknownAge = new Date('2026-11-29T10:00:00.000Z');
const record = (endpointId: string, createdAt: string | undefined): EndpointRecord => ({
  networkId: 'n'.padEnd(64, '0'),
  endpointId,
  address: null,
  addressV6: null,
  mac: '02:42:0a:4d:00:02',
  macGenerated: true,
  hostVeth: hostVethName(endpointId),
  containerVeth: 'x',
  ...(createdAt === undefined ? {} : { createdAt }),
});

describe('planEndpointSweep', () => {
  const known = newId();
  const started = new Date('2026-11-29T11:59:30.000Z');
  const cases: Array<{ what: string; e: EndpointRecord; verdict: 'remove' | 'spare' | 'keep'; startedAt?: Date }> = [
    { what: 'an old endpoint Docker has: kept', e: record(known, '2026-11-29T11:00:00.000Z'), verdict: 'keep' },
    { what: 'an old endpoint Docker does not have (DeleteEndpoint missed, or a lost reply rolled back): removed', e: record(newId(), '2026-11-29T11:00:00.000Z'), verdict: 'remove' },
    { what: 'made exactly at olderThan: spared', e: record(newId(), '2026-11-29T11:59:00.000Z'), verdict: 'spare' },
    { what: 'made within the grace period (CreateEndpoint answered, Docker not yet recorded it): spared', e: record(newId(), '2026-11-29T11:59:40.000Z'), verdict: 'spare' },
    { what: 'made after the listing began: spared', e: record(newId(), '2026-11-29T12:00:02.000Z'), verdict: 'spare' },
    { what: 'a young endpoint Docker has: kept', e: record(known, '2026-11-29T11:59:59.000Z'), verdict: 'keep' },
    { what: 'no time (written before records had one), netwire started long ago: removed', e: record(newId(), undefined), verdict: 'remove' },
    { what: 'no time, netwire started within the grace period: spared', e: record(newId(), undefined), verdict: 'spare', startedAt: started },
  ];
  it.each(cases)('$what', ({ e, verdict, startedAt }) => {
    const plan = planEndpointSweep({ endpoints: [e], keep: new Set([known]), olderThan, unknownAge: startedAt ?? unknownAge });
    const got = plan.remove.length === 1 ? 'remove' : plan.spared === 1 ? 'spare' : 'keep';
    expect(got).toBe(verdict);
  });
});

describe('planNetworkSweep', () => {
  const net = (networkId: string, createdAt?: string): NetworkRecord => ({
    spec: networkSpec({ networkId }),
    bridge: bridgeName(networkId),
    mtu: 1450,
    ...(createdAt === undefined ? {} : { createdAt }),
  });
  const [known, gone, young, legacy] = [newId(), newId(), newId(), newId()];
  it('removes old networks Docker does not have, spares young ones, keeps what Docker has', () => {
    const plan = planNetworkSweep({
      networks: [net(known, '2026-11-29T11:00:00.000Z'), net(gone, '2026-11-29T11:00:00.000Z'), net(young, '2026-11-29T11:59:10.000Z'), net(legacy)],
      keep: new Set([known]),
      olderThan,
      unknownAge,
    });
    expect(plan.remove.map((n) => n.spec.networkId)).toEqual([gone, legacy]);
    expect(plan.spared).toBe(1);
  });
});

describe('Netwire.reconcileEndpoints', () => {
  let clock = new Date('2026-11-29T11:00:00.000Z');
  beforeEach(() => {
    clock = new Date('2026-11-29T11:00:00.000Z');
  });

  async function twoNetworks() {
    const t = fakeNetwire({ now: () => clock });
    const [a, b] = [networkSpec(), networkSpec({ ipv4: [{ pool: '10.78.0.0/24', gateway: '10.78.0.1/24' }] })];
    await t.netwire.createNetwork(a);
    await t.netwire.createNetwork(b);
    return { ...t, a: a.networkId, b: b.networkId };
  }

  it('removes the veth and record of old endpoints Docker does not have, spares young ones, and says so', async () => {
    const t = await twoNetworks();
    const live = endpointReq(t.a, { address: '10.77.0.2/24' });
    const leaked = endpointReq(t.a, { address: '10.77.0.3/24' });
    await t.netwire.createEndpoint(live);
    await t.netwire.createEndpoint(leaked);
    clock = new Date('2026-11-29T11:59:30.000Z');
    const young = endpointReq(t.a, { address: '10.77.0.4/24' });
    await t.netwire.createEndpoint(young);

    const r = await t.netwire.reconcileEndpoints({ networks: [{ networkId: t.a, keep: [live.endpointId] }, { networkId: t.b, keep: [] }], olderThan: olderThan.toISOString() });
    const gone = { networkId: t.a, endpointId: leaked.endpointId, hostVeth: hostVethName(leaked.endpointId) };
    expect(r).toEqual({ removed: [gone], removedNetworks: [], spared: 1 });
    expect(t.kernel.links.has(hostVethName(leaked.endpointId))).toBe(false);
    expect([...t.store.endpoints.keys()].sort()).toEqual([live.endpointId, young.endpointId].sort());
    expect(t.events.of('endpoint.deleted')).toEqual([{ networkId: t.a, endpointId: leaked.endpointId }]);
    expect(t.events.of('endpoints.reconciled')).toEqual([r]);
    expect(t.kernel.links.get(bridgeName(t.a))?.kind).toBe('bridge');
  });

  it('a network Docker does not have at all goes with its endpoints, bridge and rules; a pass with nothing to remove publishes nothing', async () => {
    const t = await twoNetworks();
    const onB = endpointReq(t.b, { address: '10.78.0.2/24' });
    await t.netwire.createEndpoint(onB);
    const r = await t.netwire.reconcileEndpoints({ networks: [{ networkId: t.a, keep: [] }], olderThan: olderThan.toISOString() });
    expect(r).toEqual({ removed: [], removedNetworks: [{ networkId: t.b, bridge: bridgeName(t.b) }], spared: 0 });
    expect(t.store.endpoints.has(onB.endpointId)).toBe(false);
    expect(t.store.networks.has(t.b)).toBe(false);
    expect(t.kernel.links.has(bridgeName(t.b))).toBe(false);
    expect(t.kernel.links.has(hostVethName(onB.endpointId))).toBe(false);
    expect(t.kernel.firewall.has(bridgeName(t.b))).toBe(false);
    expect(t.events.of('network.deleted')).toEqual([{ networkId: t.b, bridge: bridgeName(t.b) }]);
    expect(t.events.of('endpoints.reconciled')).toEqual([r]);

    const again = await t.netwire.reconcileEndpoints({ networks: [{ networkId: t.a, keep: [] }], olderThan: olderThan.toISOString() });
    expect(again).toEqual({ removed: [], removedNetworks: [], spared: 0 });
    expect(t.events.of('endpoints.reconciled')).toHaveLength(1);
    expect(t.kernel.links.get(bridgeName(t.a))?.kind).toBe('bridge');
  });

  it('a network made within the grace period is spared though Docker does not list it yet (CreateNetwork in flight)', async () => {
    const t = await twoNetworks();
    clock = new Date('2026-11-29T11:59:30.000Z');
    const fresh = networkSpec({ ipv4: [{ pool: '10.79.0.0/24', gateway: '10.79.0.1/24' }] });
    await t.netwire.createNetwork(fresh);
    const r = await t.netwire.reconcileEndpoints({ networks: [{ networkId: t.a, keep: [] }, { networkId: t.b, keep: [] }], olderThan: olderThan.toISOString() });
    expect(r).toEqual({ removed: [], removedNetworks: [], spared: 1 });
    expect(t.store.networks.has(fresh.networkId)).toBe(true);
  });

  it('an endpoint Docker deletes while the sweep waits for the network is not reported twice', async () => {
    const t = await twoNetworks();
    const e = endpointReq(t.a);
    await t.netwire.createEndpoint(e);
    t.kernel.delayMs = 5;
    const [r] = await Promise.all([
      t.netwire.reconcileEndpoints({ networks: [{ networkId: t.a, keep: [] }, { networkId: t.b, keep: [] }], olderThan: olderThan.toISOString() }),
      t.netwire.deleteEndpoint({ networkId: t.a, endpointId: e.endpointId }),
    ]);
    expect(r.removed).toEqual([]);
    expect(t.events.of('endpoint.deleted')).toHaveLength(1);
    expect(t.store.endpoints.size).toBe(0);
  });

  it('a removal that fails is left for the next pass, and the rest still go', async () => {
    const t = await twoNetworks();
    const [e1, e2] = [endpointReq(t.a, { address: '10.77.0.2/24' }), endpointReq(t.a, { address: '10.77.0.3/24' })];
    await t.netwire.createEndpoint(e1);
    await t.netwire.createEndpoint(e2);
    t.kernel.failOn('deleteLink', hostVethName(e1.endpointId));
    const req = { networks: [{ networkId: t.a, keep: [] }, { networkId: t.b, keep: [] }], olderThan: olderThan.toISOString() };
    expect((await t.netwire.reconcileEndpoints(req)).removed.map((x) => x.endpointId)).toEqual([e2.endpointId]);
    expect(t.store.endpoints.has(e1.endpointId)).toBe(true);
    expect((await t.netwire.reconcileEndpoints(req)).removed.map((x) => x.endpointId)).toEqual([e1.endpointId]);
    expect(t.store.endpoints.size).toBe(0);
  });
});
