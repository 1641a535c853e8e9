import { randomBytes } from 'node:crypto';
import { CheckLeasesRequest, ipamRpc, IsolateEndpointsRequest, Readdress, ResOf } from '@weave/contracts';
import { DockerApiError } from '../src/catalogue/docker-engine';
import { UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { containerView, DockerContainers } from '../src/reconcile/docker-containers';
import type { DockerNetworkView } from '../src/reconcile/plan';
import { ContainerView, Displaced, findDisplaced, isolateRequest, leaseQuery, nextStep, readdressOf } from '../src/reconcile/readdress-plan';
import { MemoryReaddressStore } from '../src/reconcile/readdress-store';
import { Readdresser } from '../src/reconcile/readdresser';
import { DockerReconciler } from '../src/reconcile/reconciler';

/**
 * Containers whose address another host holds (a reclaim gave it away while this host was cut
 * off): found from ipam's answer, taken off the network by netwire, disconnected and connected
 * again through Docker (or left disconnected for their own --ip), and finished after a crash.
 */
const id = (): string => randomBytes(32).toString('hex');
const NOW = new Date('2026-11-29T12:00:00.000Z');
const SUBNET = '10.40.0.0/24';

type Holding = ResOf<typeof ipamRpc, 'checkLeases'>['addresses'][number];
const held = (address: string): Holding => ({ subnet: SUBNET, address, state: 'held', by: null, adopted: false });
const taken = (address: string, by = 'host2'): Holding => ({ subnet: SUBNET, address, state: 'taken', by, adopted: false });

function network(o: Partial<DockerNetworkView> = {}): DockerNetworkView {
  return { id: id(), name: 'weave:a', driver: 'weave', ipamDriver: 'weave', subnets: [SUBNET], reserved: ['10.40.0.1'], endpoints: [], ...o };
}

describe('the plan', () => {
  it('asks about every endpoint address of the networks on our IPAM, per subnet; reserved ones are not endpoints', () => {
    const a = network({ endpoints: [{ endpointId: id(), addresses: ['10.40.0.2'] }, { endpointId: id(), addresses: ['10.40.0.3', 'fd40::3'] }], subnets: [SUBNET, 'fd40::/64'] });
    const empty = network({ subnets: ['10.41.0.0/24'] });
    const other = network({ ipamDriver: 'default', subnets: ['172.20.0.0/16'], endpoints: [{ endpointId: id(), addresses: ['172.20.0.2'] }] });
    const q = leaseQuery('weave', [a, empty, other]);
    expect(q).toEqual({ pools: [{ subnet: SUBNET, addresses: ['10.40.0.2', '10.40.0.3', 'fd40::3'] }, { subnet: 'fd40::/64', addresses: ['10.40.0.2', '10.40.0.3', 'fd40::3'] }] });
    CheckLeasesRequest.parse(q);
  });

  it('finds the endpoints with a taken address, once each, on their own subnet only; netwire hears of our driver\'s', () => {
    const [c1, c2] = [id(), id()];
    const e = { moved: id(), kept: id(), bare: id(), bridged: id() };
    const ours = network({
      endpoints: [
        { endpointId: e.moved, addresses: ['10.40.0.2'], containerId: c1, container: 'web' },
        { endpointId: e.kept, addresses: ['10.40.0.3'], containerId: c2, container: 'db' },
        { endpointId: e.bare, addresses: ['10.40.0.4'], containerId: null },
      ],
    });
    // The same address in another network's subnet is another address.
    const bridged = network({ driver: 'bridge', name: 'b', subnets: ['10.50.0.0/24'], endpoints: [{ endpointId: e.bridged, addresses: ['10.50.0.2'], containerId: c2, container: 'db' }] });
    const holdings = [taken('10.40.0.2'), held('10.40.0.3'), taken('10.40.0.4', 'host3'), { ...taken('10.50.0.2'), subnet: '10.50.0.0/24' }, taken('10.50.0.3')];
    const d = findDisplaced('weave', [ours, bridged], holdings);
    expect(d).toEqual([
      { networkId: ours.id, network: 'weave:a', wired: true, endpointId: e.moved, containerId: c1, container: 'web', address: '10.40.0.2', takenBy: 'host2' },
      { networkId: ours.id, network: 'weave:a', wired: true, endpointId: e.bare, containerId: null, container: '', address: '10.40.0.4', takenBy: 'host3' },
      { networkId: bridged.id, network: 'b', wired: false, endpointId: e.bridged, containerId: c2, container: 'db', address: '10.50.0.2', takenBy: 'host2' },
    ]);
    const req = isolateRequest(d);
    expect(req.endpoints.map((x) => x.endpointId)).toEqual([e.moved, e.bare]);
    IsolateEndpointsRequest.parse(req);
  });

  const displaced = (o: Partial<Displaced> = {}): Displaced => ({ networkId: id(), network: 'weave:a', wired: true, endpointId: id(), containerId: id(), container: 'web', address: '10.40.0.2', takenBy: 'host2', ...o });
  const on = (d: Displaced, o: Partial<ContainerView['networks'][string]> = {}, containerId = d.containerId!): ContainerView => ({
    id: containerId,
    name: d.container,
    networks: { [d.networkId]: { endpointId: d.endpointId, address: d.address, ipamConfig: null, aliases: [containerId.slice(0, 12), 'web.local'], links: [], driverOpts: null, ...o } },
  });

  it('reconnects with the same aliases and options, without the alias Docker adds itself', () => {
    const d = displaced();
    const r = readdressOf(d, on(d, { driverOpts: { 'com.example': 'x' }, ipamConfig: { IPv6Address: 'fd40::9' } }), NOW);
    expect(r).toEqual({
      containerId: d.containerId,
      container: 'web',
      networkId: d.networkId,
      network: 'weave:a',
      endpointId: d.endpointId,
      address: '10.40.0.2',
      takenBy: 'host2',
      reconnect: true,
      endpointConfig: { IPAMConfig: { IPv6Address: 'fd40::9' }, Aliases: ['web.local'], DriverOpts: { 'com.example': 'x' } },
      since: NOW.toISOString(),
    });
    Readdress.parse(r);
  });

  it("leaves disconnected a container whose own --ip was taken; nothing for one that moved meanwhile", () => {
    const d = displaced();
    expect(readdressOf(d, on(d, { ipamConfig: { IPv4Address: '10.40.0.2' } }), NOW)?.reconnect).toBe(false);
    expect(readdressOf(d, on(d, { endpointId: id() }), NOW)).toBeNull();
    expect(readdressOf(d, { id: d.containerId!, name: 'web', networks: {} }, NOW)).toBeNull();
  });

  it('nextStep finishes a move from wherever it stopped', () => {
    const d = displaced();
    const rec = readdressOf(d, on(d), NOW)!;
    const own = { ...rec, reconnect: false };
    const off: ContainerView = { id: rec.containerId, name: 'web', networks: {} };
    expect(nextStep(rec, on(d))).toBe('disconnect');
    expect(nextStep(rec, off)).toBe('connect');
    expect(nextStep(own, off)).toBe('stay-disconnected');
    expect(nextStep(own, on(d))).toBe('disconnect');
    expect(nextStep(rec, on(d, { endpointId: id() }))).toBe('forget');
    expect(nextStep(own, on(d, { endpointId: '' }))).toBe('forget');
    expect(nextStep(rec, null)).toBe('forget');
  });

  it("reads Docker 20.10's container inspection", () => {
    const [cid, nid, eid] = [id(), id(), id()];
    const raw = {
      Id: cid,
      Name: '/web',
      NetworkSettings: {
        Networks: {
          'weave:a': { IPAMConfig: { IPv4Address: '10.40.0.50', IPv6Address: '' }, Links: null, Aliases: [cid.slice(0, 12)], NetworkID: nid, EndpointID: eid, IPAddress: '10.40.0.50', DriverOpts: null },
          bridge: { IPAMConfig: null, Links: null, Aliases: null, NetworkID: id(), EndpointID: '', IPAddress: '' },
        },
      },
    };
    const v = containerView(raw);
    expect(v.name).toBe('web');
    expect(v.networks[nid]).toEqual({ endpointId: eid, address: '10.40.0.50', ipamConfig: { IPv4Address: '10.40.0.50' }, aliases: [cid.slice(0, 12)], links: [], driverOpts: null });
    expect(Object.values(v.networks)[1]).toMatchObject({ endpointId: '', address: null, ipamConfig: null });
  });
});

/** A Docker engine of containers on networks; connecting gives the next free address of the subnet. */
class FakeDocker implements DockerContainers {
  readonly containers = new Map<string, ContainerView>();
  readonly calls: string[] = [];
  private next = 100;
  failConnect = 0;

  async container(cid: string) {
    return structuredClone(this.containers.get(cid) ?? null);
  }
  async disconnect(networkId: string, cid: string) {
    this.calls.push(`disconnect ${cid.slice(0, 4)}`);
    delete this.containers.get(cid)!.networks[networkId];
  }
  async connect(networkId: string, cid: string, endpointConfig: Record<string, unknown>) {
    this.calls.push(`connect ${cid.slice(0, 4)} ${JSON.stringify(endpointConfig)}`);
    if (this.failConnect > 0 && this.failConnect--) throw new DockerApiError('POST', `/networks/${networkId}/connect`, 500, 'weave: the ipam service is not running');
    this.containers.get(cid)!.networks[networkId] = { endpointId: id(), address: `10.40.0.${this.next++}`, ipamConfig: null, aliases: [], links: [], driverOpts: null };
  }
}

function setup() {
  const docker = new FakeDocker();
  const store = new MemoryReaddressStore();
  const published: Array<{ outcome: string; address: string; newAddress: string | null; reason: string }> = [];
  const calls: string[] = [];
  const state = { holdings: [] as Holding[], ipamDown: false };
  const r = new Readdresser({
    driver: 'weave',
    docker,
    ipam: {
      checkLeases: async (q) => {
        calls.push(`checkLeases ${q.pools.length}`);
        if (state.ipamDown) throw new UnavailableError('the ipam service on host h1 is not running (no responder for checkLeases)');
        return { addresses: state.holdings };
      },
    },
    netwire: {
      isolateEndpoints: async (q) => {
        calls.push(`isolate ${q.endpoints.map((e) => e.endpointId.slice(0, 4)).join(',')}`);
        return { isolated: q.endpoints.map((e) => ({ networkId: e.networkId, endpointId: e.endpointId, hostVeth: 'wvh' })), already: 0, unknown: [] };
      },
    },
    store,
    events: { publish: (_kind, data) => void published.push(data) },
    log: silentLogger(),
    now: () => NOW,
  });
  const net = network();
  /** A running container on `net` with `address`, as Docker lists it and inspects it. */
  const run = (name: string, address: string, ownIp = false) => {
    const cid = id();
    const endpointId = id();
    docker.containers.set(cid, { id: cid, name, networks: { [net.id]: { endpointId, address, ipamConfig: ownIp ? { IPv4Address: address } : null, aliases: [cid.slice(0, 12)], links: [], driverOpts: null } } });
    return cid;
  };
  /** Docker's listing now. */
  const listing = (): DockerNetworkView[] => {
    const endpoints = [...docker.containers.values()].flatMap((c) => {
      const ep = c.networks[net.id];
      return ep ? [{ endpointId: ep.endpointId, addresses: ep.address ? [ep.address] : [], containerId: c.id, container: c.name }] : [];
    });
    return [{ ...net, endpoints }];
  };
  return { docker, store, published, calls, state, r, net, run, listing };
}

describe('Readdresser', () => {
  it('takes the displaced endpoint off the network first, then reconnects its container with a fresh address and forgets the move', async () => {
    const t = setup();
    const web = run(t, 'web', '10.40.0.2');
    run(t, 'db', '10.40.0.3');
    t.state.holdings = [taken('10.40.0.2'), held('10.40.0.3')];
    const oldEndpoint = endpointOf(t, web);
    const report = await t.r.pass(t.listing());
    expect(report).toEqual({ displaced: 1, isolated: 1, reconnected: 1, disconnected: 0, pending: 0, problems: [] });
    expect(t.calls).toEqual(['checkLeases 1', `isolate ${oldEndpoint.slice(0, 4)}`]);
    expect(t.docker.calls).toEqual([`disconnect ${web.slice(0, 4)}`, `connect ${web.slice(0, 4)} {}`]);
    expect(t.docker.containers.get(web)!.networks[t.net.id]!.address).toBe('10.40.0.100');
    expect(t.published).toEqual([expect.objectContaining({ outcome: 'reconnected', address: '10.40.0.2', newAddress: '10.40.0.100', reason: expect.stringMatching(/10\.40\.0\.2 is leased by host2/) })]);
    expect(await t.store.list()).toEqual([]);

    // The next pass finds nothing to do: the new address is this host's.
    t.state.holdings = [held('10.40.0.100'), held('10.40.0.3')];
    expect(await t.r.pass(t.listing())).toEqual({ displaced: 0, isolated: 0, reconnected: 0, disconnected: 0, pending: 0, problems: [] });
    expect(t.docker.calls).toHaveLength(2);
  });

  it('leaves a container whose own --ip was taken disconnected, says so once, and keeps the record until the container is gone', async () => {
    const t = setup();
    const fixed = run(t, 'fixed', '10.40.0.50', true);
    t.state.holdings = [taken('10.40.0.50')];
    expect(await t.r.pass(t.listing())).toMatchObject({ displaced: 1, disconnected: 1, reconnected: 0, pending: 1 });
    expect(t.docker.calls).toEqual([`disconnect ${fixed.slice(0, 4)}`]);
    expect(t.published).toEqual([expect.objectContaining({ outcome: 'disconnected', newAddress: null, reason: expect.stringMatching(/it stays disconnected from weave:a; connect it again with another --ip or none \(docker network connect weave:a fixed\)/) })]);
    expect(await t.r.status()).toEqual([expect.objectContaining({ container: 'fixed', reconnect: false })]);

    // Later passes: no Docker call, no second event; the record stays for `weave status`.
    expect(await t.r.pass(t.listing())).toMatchObject({ displaced: 0, pending: 1 });
    expect(t.docker.calls).toHaveLength(1);
    expect(t.published).toHaveLength(1);
    t.docker.containers.delete(fixed);
    expect(await t.r.pass(t.listing())).toMatchObject({ pending: 0 });
    expect(await t.r.status()).toEqual([]);
  });

  it('after a crash between the record and the disconnect, or between the disconnect and the connect, the next pass finishes the move', async () => {
    const t = setup();
    const a = run(t, 'a', '10.40.0.2');
    const b = run(t, 'b', '10.40.0.3');
    const record = (cid: string) => readdressOf({ networkId: t.net.id, network: 'weave:a', wired: true, endpointId: endpointOf(t, cid), containerId: cid, container: 'x', address: '10.40.0.2', takenBy: 'host2' }, t.docker.containers.get(cid)!, NOW)!;
    await t.store.put(record(a));
    await t.store.put(record(b));
    delete t.docker.containers.get(b)!.networks[t.net.id];
    // ipam does not answer: nothing new is found, the open moves are still driven.
    t.state.ipamDown = true;
    const report = await t.r.pass(t.listing());
    expect(report).toMatchObject({ displaced: 0, reconnected: 2, pending: 0 });
    expect(report.problems).toEqual(['could not ask ipam which addresses this host holds: the ipam service on host h1 is not running (no responder for checkLeases)']);
    expect(t.docker.calls).toEqual([`disconnect ${a.slice(0, 4)}`, `connect ${a.slice(0, 4)} {}`, `connect ${b.slice(0, 4)} {}`]);
    expect(await t.store.list()).toEqual([]);
  });

  it('a connect that fails is a problem of the pass; the record stays and the next pass connects', async () => {
    const t = setup();
    const web = run(t, 'web', '10.40.0.2');
    t.state.holdings = [taken('10.40.0.2')];
    t.docker.failConnect = 1;
    const first = await t.r.pass(t.listing());
    expect(first).toMatchObject({ displaced: 1, reconnected: 0, pending: 1 });
    expect(first.problems).toEqual([expect.stringMatching(/could not move web off 10\.40\.0\.2 on weave:a: .*ipam service is not running/)]);
    expect(t.docker.containers.get(web)!.networks[t.net.id]).toBeUndefined();
    expect(await t.r.pass(t.listing())).toMatchObject({ displaced: 0, reconnected: 1, pending: 0 });
    expect(t.docker.containers.get(web)!.networks[t.net.id]!.address).toBe('10.40.0.100');
  });

  it('a container removed before its move is recorded needs nothing', async () => {
    const t = setup();
    const web = run(t, 'web', '10.40.0.2');
    t.state.holdings = [taken('10.40.0.2')];
    const listed = t.listing();
    t.docker.containers.delete(web);
    expect(await t.r.pass(listed)).toMatchObject({ displaced: 1, isolated: 1, reconnected: 0, pending: 0, problems: [] });
    expect(t.docker.calls).toEqual([]);
  });
});

describe('DockerReconciler with the readdress step', () => {
  it('moves containers first, then sweeps; the pass reports both and the step\'s problems', async () => {
    const order: string[] = [];
    const view = network();
    const r = new DockerReconciler({
      driver: 'weave',
      docker: { endpoints: async () => [view] },
      ipam: { reconcileHost: async () => (order.push('reconcileHost'), { released: [], releasedPools: [], spared: 0 }) },
      netwire: { reconcileEndpoints: async () => (order.push('reconcileEndpoints'), { removed: [], removedNetworks: [], spared: 0 }) },
      events: { publish: () => undefined },
      log: silentLogger(),
      graceMs: 60_000,
      intervalMs: 3_600_000,
      now: () => NOW,
      readdress: { pass: async () => (order.push('readdress'), { displaced: 1, isolated: 1, reconnected: 0, disconnected: 0, pending: 1, problems: ['could not move web'] }) },
    });
    const report = await r.run();
    expect(order).toEqual(['readdress', 'reconcileHost', 'reconcileEndpoints']);
    expect(report.readdress).toEqual({ displaced: 1, isolated: 1, reconnected: 0, disconnected: 0, pending: 1 });
    expect(report.problems).toEqual(['readdress: could not move web']);
  });
});

function run(t: ReturnType<typeof setup>, name: string, address: string, ownIp = false): string {
  return t.run(name, address, ownIp);
}
function endpointOf(t: ReturnType<typeof setup>, cid: string): string {
  return t.docker.containers.get(cid)!.networks[t.net.id]!.endpointId;
}
