import type { PortRequest } from '@weave/contracts';
import { ConflictError, describeError, InvalidRequestError } from '@weave/errors';
import { bridgeName, hostVethName } from '../src';
import { endpointReq, fakeNetwire, networkSpec } from './helpers';

/** Published ports through netwire's behaviour, on the in-memory kernel. */
const tcp = (hostPort: number, containerPort = 80, o: Partial<PortRequest> = {}): PortRequest => ({
  protocol: 'tcp',
  containerPort,
  hostIp: null,
  hostPort,
  hostPortEnd: hostPort,
  ...o,
});

async function withEndpoint(o: { internal?: boolean; address?: string } = {}) {
  const t = fakeNetwire();
  const spec = networkSpec({ internal: o.internal ?? false });
  await t.netwire.createNetwork(spec);
  const ep = endpointReq(spec.networkId, { address: o.address ?? '10.77.0.2/24' });
  await t.netwire.createEndpoint(ep);
  const another = async (address: string) => {
    const e = endpointReq(spec.networkId, { address });
    await t.netwire.createEndpoint(e);
    return { networkId: spec.networkId, endpointId: e.endpointId };
  };
  return { ...t, networkId: spec.networkId, bridge: bridgeName(spec.networkId), ref: { networkId: spec.networkId, endpointId: ep.endpointId }, hostVeth: hostVethName(ep.endpointId), another };
}

describe('publishing ports', () => {
  it('publishes, remembers and announces the ports, and a repeat changes nothing', async () => {
    const t = await withEndpoint();
    t.kernel.ephemeral = { first: 49153, last: 49160 };
    const ports = [tcp(8080), tcp(0, 53, { protocol: 'udp', hostIp: '127.0.0.1' })];
    const r = await t.netwire.publishPorts({ ...t.ref, ports });
    expect(r.ports).toEqual([
      { protocol: 'tcp', hostIp: null, hostPort: 8080, containerIp: '10.77.0.2', containerPort: 80 },
      { protocol: 'udp', hostIp: '127.0.0.1', hostPort: 49153, containerIp: '10.77.0.2', containerPort: 53 },
    ]);
    expect(t.kernel.ports.get(t.hostVeth)).toEqual({ bridge: t.bridge, hostVeth: t.hostVeth, ports: r.ports });
    expect(t.kernel.hairpin.has(t.hostVeth)).toBe(true);
    expect(t.kernel.routeLocalnet.has(t.bridge)).toBe(true);
    expect(t.store.endpoints.get(t.ref.endpointId)!.ports).toEqual(r.ports);
    expect(t.events.of('ports.published')).toEqual([{ ...t.ref, ports: r.ports }]);
    expect((await t.netwire.status()).endpoints[0]!.ports).toEqual(r.ports);

    t.kernel.ephemeral = { first: 40000, last: 40010 };
    await expect(t.netwire.publishPorts({ ...t.ref, ports })).resolves.toEqual(r);
  });

  it("refuses a port another endpoint publishes, with its holder, and changes nothing (all or none)", async () => {
    const t = await withEndpoint();
    const other = await t.another('10.77.0.3/24');
    await t.netwire.publishPorts({ ...other, ports: [tcp(8080)] });
    const before = structuredClone([...t.kernel.ports.entries()]);
    const err = await t.netwire.publishPorts({ ...t.ref, ports: [tcp(9090), tcp(8080, 81)] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toBe(`port 8080/tcp is already published by weave for endpoint ${hostVethName(other.endpointId)} (to 10.77.0.3:80)`);
    expect([...t.kernel.ports.entries()]).toEqual(before);
    expect(t.store.endpoints.get(t.ref.endpointId)!.ports).toBeUndefined();
  });

  it("refuses a port Docker or a process holds", async () => {
    const t = await withEndpoint();
    t.kernel.foreignPorts = [{ protocol: 'tcp', hostIp: null, hostPort: 8080, by: 'published by Docker (to 172.17.0.2:80)' }];
    await expect(t.netwire.publishPorts({ ...t.ref, ports: [tcp(8080)] })).rejects.toThrow('port 8080/tcp is already published by Docker (to 172.17.0.2:80)');
  });

  it('refuses on an internal network, which Docker asks when a container leaves its other network', async () => {
    const t = await withEndpoint({ internal: true });
    const err = await t.netwire.publishPorts({ ...t.ref, ports: [tcp(8080)] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as Error).message).toMatch(/is internal \(--internal\).*publishes no ports \(8080:80\/tcp\)/);
    expect(t.kernel.ports.size).toBe(0);
  });

  it('puts back what the endpoint had when remembering the new ports fails', async () => {
    const t = await withEndpoint();
    const first = await t.netwire.publishPorts({ ...t.ref, ports: [tcp(8080)] });
    t.store.failOn('putEndpoint');
    await expect(t.netwire.publishPorts({ ...t.ref, ports: [tcp(9090)] })).rejects.toThrow(/cannot publish 9090:80\/tcp/);
    expect(t.kernel.ports.get(t.hostVeth)!.ports).toEqual(first.ports);
    t.kernel.failOn('ensurePortRules');
    const err = await t.netwire.publishPorts({ ...t.ref, ports: [tcp(9090)] }).catch((e: unknown) => e);
    expect(describeError(err)).toMatch(/cannot publish 9090:80\/tcp.*injected failure/);
    expect(t.kernel.ports.get(t.hostVeth)!.ports).toEqual(first.ports);
  });

  it('unpublishes on revoke, and a revoke without ports asks nothing of the kernel', async () => {
    const t = await withEndpoint();
    const { ports } = await t.netwire.publishPorts({ ...t.ref, ports: [tcp(8080)] });
    await t.netwire.unpublishPorts(t.ref);
    expect(t.kernel.ports.size).toBe(0);
    expect(t.store.endpoints.get(t.ref.endpointId)!.ports).toEqual([]);
    expect(t.events.of('ports.unpublished')).toEqual([{ ...t.ref, ports }]);
    const calls = t.kernel.calls.length;
    await t.netwire.unpublishPorts(t.ref);
    expect(t.kernel.calls.length).toBe(calls);
    // The port is free again for someone else.
    const other = await t.another('10.77.0.3/24');
    await expect(t.netwire.publishPorts({ ...other, ports: [tcp(8080)] })).resolves.toMatchObject({ ports: [{ hostPort: 8080 }] });
  });

  it('takes the ports away with the endpoint when no revoke came, and with the network', async () => {
    const t = await withEndpoint();
    await t.netwire.publishPorts({ ...t.ref, ports: [tcp(8080)] });
    await t.netwire.deleteEndpoint(t.ref);
    expect(t.kernel.ports.size).toBe(0);
    expect(t.events.kinds()).toContain('ports.unpublished');

    const other = await t.another('10.77.0.3/24');
    await t.netwire.publishPorts({ ...other, ports: [tcp(8080)] });
    await t.netwire.deleteNetwork({ networkId: t.networkId });
    expect(t.kernel.ports.size).toBe(0);
  });

  it('takes the ports away with an endpoint Docker no longer has', async () => {
    const t = await withEndpoint();
    await t.netwire.publishPorts({ ...t.ref, ports: [tcp(8080)] });
    const r = await t.netwire.reconcileEndpoints({ networks: [{ networkId: t.networkId, keep: [] }], olderThan: new Date(Date.now() + 60_000).toISOString() });
    expect(r.removed.map((e) => e.endpointId)).toEqual([t.ref.endpointId]);
    expect(t.kernel.ports.size).toBe(0);
  });

  it('restores recorded ports at reconcile and removes rules no endpoint has', async () => {
    const t = await withEndpoint();
    const { ports } = await t.netwire.publishPorts({ ...t.ref, ports: [tcp(8080)] });
    // A reboot or a flush took our rules; a crash left another endpoint's.
    t.kernel.ports.clear();
    t.kernel.ports.set('wvh99999999999', { bridge: t.bridge, hostVeth: 'wvh99999999999', ports });
    const r = await t.netwire.reconcile();
    expect(r).toMatchObject({ removedPorts: ['wvh99999999999'], restoredPorts: [t.ref.endpointId], problems: 0 });
    expect([...t.kernel.ports.keys()]).toEqual([t.hostVeth]);
    expect(t.events.of('reconciled')[0]).toMatchObject({ removedPorts: ['wvh99999999999'], restoredPorts: [t.ref.endpointId] });
  });
});
