import { randomBytes } from 'node:crypto';
import { ReconcileEndpointsRequest, ReconcileHostRequest } from '@weave/contracts';
import { UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { reconcileSettings } from '../src/env';
import { EndpointsInspect, networkView } from '../src/reconcile/docker-view';
import { DockerNetworkView, planReconcile } from '../src/reconcile/plan';
import { DockerReconciler } from '../src/reconcile/reconciler';

const id = (): string => randomBytes(32).toString('hex');
const listedAt = new Date('2026-11-29T12:00:00.000Z');

/** `GET /networks/<id>` as dockerd 20.10 answers it, trimmed to the fields that matter here. */
const inspect = (o: { id?: string; containers?: Record<string, unknown>; config?: unknown[] } = {}) => ({
  Name: 'weave:foo',
  Id: o.id ?? id(),
  Driver: 'weave',
  IPAM: { Driver: 'weave', Options: null, Config: o.config ?? [{ Subnet: '10.40.0.0/24', Gateway: '10.40.0.1' }] },
  Containers: o.containers ?? {},
  Options: {},
  Labels: {},
});
const container = (endpointId: string, ipv4: string, ipv6 = '') => ({ Name: 'c', EndpointID: endpointId, MacAddress: '02:42:0a:28:00:02', IPv4Address: ipv4, IPv6Address: ipv6 });

describe("Docker's view of a network", () => {
  it('has every endpoint with bare addresses, the gateways and the aux addresses', () => {
    const [e1, e2, e3] = [id(), id(), id()];
    const [c1, c3] = [id(), id()];
    const raw = inspect({
      config: [
        { Subnet: '10.40.0.0/24', Gateway: '10.40.0.1', AuxiliaryAddresses: { printer: '10.40.0.200' } },
        { Subnet: 'fd40::/64', Gateway: 'fd40::1' },
      ],
      containers: { [c1]: container(e1, '10.40.0.2/24', 'fd40::2/64'), [`ep-${e2}`]: container(e2, '10.40.0.3/24'), [c3]: container(e3, '') },
    });
    const v = networkView(EndpointsInspect.parse(raw));
    expect(v).toEqual({
      id: raw.Id,
      name: 'weave:foo',
      driver: 'weave',
      ipamDriver: 'weave',
      subnets: ['10.40.0.0/24', 'fd40::/64'],
      reserved: ['10.40.0.1', '10.40.0.200', 'fd40::1'],
      endpoints: [
        { endpointId: e1, addresses: ['10.40.0.2', 'fd40::2'], containerId: c1, container: 'c' },
        { endpointId: e2, addresses: ['10.40.0.3'], containerId: null, container: 'c' },
        { endpointId: e3, addresses: [], containerId: c3, container: 'c' },
      ],
    });
  });

  it('a network without containers or IPAM config has none', () => {
    const raw = { ...inspect(), Containers: null, IPAM: { Config: null } };
    expect(networkView(EndpointsInspect.parse(raw))).toMatchObject({ subnets: [], reserved: [], endpoints: [] });
  });

  it.each([
    ['an endpoint id that is not an id', { containers: { c: container('abc', '10.40.0.2/24') } }],
    ['an address that does not parse', { containers: { c: container(id(), '10.40.0.300/24') } }],
    ['a subnet that is not a prefix', { config: [{ Subnet: '10.40.0.7/24' }] }],
  ])('refuses %s: a misread view must not release anything', (_what, o) => {
    expect(() => EndpointsInspect.parse(inspect(o))).toThrow();
  });
});

describe('planReconcile', () => {
  const net = (o: Partial<DockerNetworkView> = {}): DockerNetworkView => ({
    id: id(),
    name: 'weave:a',
    driver: 'weave',
    ipamDriver: 'weave',
    subnets: ['10.40.0.0/24'],
    reserved: ['10.40.0.1'],
    endpoints: [],
    ...o,
  });

  it('keeps every address and endpoint Docker has, per network, and dates the cut-off from the start of the listing', () => {
    const [e1, e2] = [id(), id()];
    const a = net({ endpoints: [{ endpointId: e1, addresses: ['10.40.0.2'] }, { endpointId: e2, addresses: [] }] });
    const b = net({ name: 'weave:b', subnets: ['10.41.0.0/24', 'fd41::/64'], reserved: ['10.41.0.1', '10.41.0.50'], endpoints: [] });
    const p = planReconcile('weave', [a, b], listedAt, 60_000);
    expect(p.ipam).toEqual({
      pools: [
        { subnet: '10.40.0.0/24', keep: ['10.40.0.1', '10.40.0.2'] },
        { subnet: '10.41.0.0/24', keep: ['10.41.0.1', '10.41.0.50'] },
        { subnet: 'fd41::/64', keep: ['10.41.0.1', '10.41.0.50'] },
      ],
      olderThan: '2026-11-29T11:59:00.000Z',
    });
    expect(p.netwire).toEqual({ networks: [{ networkId: a.id, keep: [e1, e2] }, { networkId: b.id, keep: [] }], olderThan: '2026-11-29T11:59:00.000Z' });
    expect(p.endpoints).toBe(2);
    // What the services will validate.
    ReconcileHostRequest.parse(p.ipam);
    ReconcileEndpointsRequest.parse(p.netwire);
  });

  it('a network of another driver on our IPAM (-d bridge --ipam-driver weave) is for ipam only', () => {
    const e = id();
    const bridged = net({ driver: 'bridge', subnets: ['10.42.0.0/24'], reserved: ['10.42.0.1'], endpoints: [{ endpointId: e, addresses: ['10.42.0.2'] }] });
    const p = planReconcile('weave', [bridged], listedAt, 60_000);
    expect(p.ipam.pools).toEqual([{ subnet: '10.42.0.0/24', keep: ['10.42.0.1', '10.42.0.2'] }]);
    expect(p.netwire.networks).toEqual([]);
  });

  it('names no network Docker does not list: their leases and records are left alone', () => {
    expect(planReconcile('weave', [], listedAt, 60_000)).toEqual({
      ipam: { pools: [], olderThan: '2026-11-29T11:59:00.000Z' },
      netwire: { networks: [], olderThan: '2026-11-29T11:59:00.000Z' },
      endpoints: 0,
    });
  });
});

describe('reconcileSettings', () => {
  const env = { WEAVE_RECONCILE_INTERVAL_MS: 60_000, WEAVE_RECONCILE_GRACE_MS: 60_000, WEAVE_RPC_TIMEOUT_MS: 10_000 };
  it('accepts a grace that covers two RPC timeouts and Docker retrying a restarting plugin', () => {
    expect(reconcileSettings(env)).toEqual({ intervalMs: 60_000, graceMs: 60_000 });
    expect(reconcileSettings({ ...env, WEAVE_RECONCILE_GRACE_MS: 35_000 }).graceMs).toBe(35_000);
  });
  it('refuses a shorter one, saying why', () => {
    expect(() => reconcileSettings({ ...env, WEAVE_RECONCILE_GRACE_MS: 34_999 })).toThrow(/WEAVE_RECONCILE_GRACE_MS=34999 is too short: an endpoint can take up to 35000 ms/);
  });
});

describe('DockerReconciler', () => {
  const setup = (o: { docker?: () => Promise<DockerNetworkView[]>; ipamFails?: boolean } = {}) => {
    const calls: string[] = [];
    const published: unknown[] = [];
    const endpointId = id();
    const view: DockerNetworkView = { id: id(), name: 'weave:a', driver: 'weave', ipamDriver: 'weave', subnets: ['10.40.0.0/24'], reserved: [], endpoints: [{ endpointId, addresses: ['10.40.0.2'] }] };
    let release = () => {};
    const r = new DockerReconciler({
      driver: 'weave',
      docker: { endpoints: o.docker ?? (async () => (calls.push('docker'), [view])) },
      ipam: {
        reconcileHost: async (req) => {
          calls.push(`ipam ${req.olderThan}`);
          if (o.ipamFails) throw new UnavailableError('the ipam service on host h1 is not running (no responder for reconcileHost)');
          return { released: [{ poolId: 'weave:10.40.0.0/24', address: '10.40.0.9', leasedAt: '2026-11-29T11:00:00.000Z' }], releasedPools: [], spared: 0 };
        },
      },
      netwire: {
        reconcileEndpoints: async () => {
          calls.push('netwire');
          await new Promise<void>((res) => (release = res));
          return { removed: [], removedNetworks: [], spared: 1 };
        },
      },
      events: { publish: (_kind, data) => void published.push(data) },
      log: silentLogger(),
      graceMs: 60_000,
      intervalMs: 3_600_000,
      now: () => listedAt,
    });
    const finishNetwire = async () => {
      while (!calls.includes('netwire')) await new Promise((res) => setImmediate(res));
      release();
    };
    return { r, calls, published, finishNetwire, release: () => release() };
  };

  it('asks ipam, then netwire, reports both and announces what was dropped', async () => {
    const t = setup();
    const run = t.r.run();
    await t.finishNetwire();
    const report = await run;
    expect(report).toEqual({
      listedAt: '2026-11-29T12:00:00.000Z',
      olderThan: '2026-11-29T11:59:00.000Z',
      networks: 1,
      endpoints: 1,
      ipam: { released: [{ poolId: 'weave:10.40.0.0/24', address: '10.40.0.9', leasedAt: '2026-11-29T11:00:00.000Z' }], releasedPools: [], spared: 0 },
      netwire: { removed: [], removedNetworks: [], spared: 1 },
      problems: [],
    });
    expect(t.calls).toEqual(['docker', 'ipam 2026-11-29T11:59:00.000Z', 'netwire']);
    expect(t.published).toEqual([{ networks: 1, endpoints: 1, releasedAddresses: 1, releasedPools: 0, removedEndpoints: 0, removedNetworks: 0 }]);
  });

  it('a service that does not answer is a problem in the report; the other is still asked', async () => {
    const t = setup({ ipamFails: true });
    const run = t.r.run();
    await t.finishNetwire();
    const report = await run;
    expect(report.ipam).toBeNull();
    expect(report.netwire).toEqual({ removed: [], removedNetworks: [], spared: 1 });
    expect(report.problems).toEqual(['ipam: the ipam service on host h1 is not running (no responder for reconcileHost)']);
    expect(t.published).toEqual([]);
  });

  it('when Docker cannot be read, nothing is asked and the caller is told why', async () => {
    const t = setup({ docker: async () => Promise.reject(new Error('connect ENOENT /var/run/docker.sock')) });
    await expect(t.r.run()).rejects.toThrow(/cannot list this host's weave networks and their endpoints in Docker.*ENOENT/);
    expect(t.calls).toEqual([]);
  });

  it('asking during a pass gets one more pass after it, never two at once', async () => {
    const t = setup();
    const inNetwire = async () => {
      while (!t.calls.includes('netwire')) await new Promise((res) => setImmediate(res));
    };
    const first = t.r.run();
    await inNetwire();
    const [second, third] = [t.r.run(), t.r.run()];
    t.calls.splice(0);
    t.release();
    await inNetwire();
    t.release();
    await Promise.all([first, second, third]);
    expect(t.calls).toEqual(['docker', 'ipam 2026-11-29T11:59:00.000Z', 'netwire']);
  });
});
