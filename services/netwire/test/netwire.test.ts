import { ConflictError, describeError, NotFoundError, UnavailableError } from '@weave/errors';
import { bridgeName, containerVethName, hostVethName } from '../src';
import { endpointReq, fakeNetwire, networkSpec, newId } from './helpers';

describe('createNetwork', () => {
  it('makes an up bridge with the derived MAC, the MTU, the gateway and the rules, records it and says so', async () => {
    const t = fakeNetwire();
    const spec = networkSpec({ ipv6: [{ pool: 'fd77::/64', gateway: 'fd77::1/64' }] });
    const bridge = bridgeName(spec.networkId);
    await expect(t.netwire.createNetwork(spec)).resolves.toEqual({ bridge, mtu: 1436 });
    const br = t.kernel.links.get(bridge)!;
    expect(br).toMatchObject({ kind: 'bridge', mac: '7a:57:0a:4d:00:00', mtu: 1436, up: true });
    expect(t.kernel.addresses(bridge)).toEqual(['10.77.0.1/24', 'fd77::1/64']);
    expect(t.kernel.firewall.get(bridge)).toEqual({ bridge, internal: false, masquerade: ['10.77.0.0/24'], dns: null });
    expect(t.kernel.chains).toBe(true);
    expect(t.store.networks.get(spec.networkId)).toEqual({ spec, bridge, mtu: 1436, createdAt: expect.any(String) });
    expect(t.events.of('network.created')).toEqual([{ networkId: spec.networkId, bridge, mtu: 1436, subnets: ['10.77.0.0/24', 'fd77::/64'], wireId: 0x0a4d0000, gatewayMac: '7a:57:0a:4d:00:00' }]);
  });

  it('takes the MTU from the network, then WEAVE_MTU, then the underlay', async () => {
    const a = fakeNetwire({ mtu: 1300 });
    expect((await a.netwire.createNetwork(networkSpec({ mtu: 1400 }))).mtu).toBe(1400);
    expect((await a.netwire.createNetwork(networkSpec())).mtu).toBe(1300);
    const b = fakeNetwire();
    b.kernel.underlay = 9001;
    expect((await b.netwire.createNetwork(networkSpec())).mtu).toBe(8937);
  });

  it('puts no address on an internal network and isolates it', async () => {
    const t = fakeNetwire();
    const spec = networkSpec({ internal: true });
    const { bridge } = await t.netwire.createNetwork(spec);
    expect(t.kernel.addresses(bridge)).toEqual([]);
    expect(t.kernel.firewall.get(bridge)).toEqual({ bridge, internal: true, masquerade: [], dns: null });
  });

  it('is idempotent: a second create changes nothing', async () => {
    const t = fakeNetwire();
    const spec = networkSpec();
    const first = await t.netwire.createNetwork(spec);
    const snapshot = JSON.stringify([...t.kernel.links.values()]) + t.kernel.ruleLines().join();
    await expect(t.netwire.createNetwork(spec)).resolves.toEqual(first);
    expect(JSON.stringify([...t.kernel.links.values()]) + t.kernel.ruleLines().join()).toBe(snapshot);
    expect(t.store.networks.size).toBe(1);
  });

  it('refuses the same id with another configuration', async () => {
    const t = fakeNetwire();
    const spec = networkSpec();
    await t.netwire.createNetwork(spec);
    await expect(t.netwire.createNetwork({ ...spec, internal: true })).rejects.toThrow(ConflictError);
  });

  it('replaces a leftover bridge of the same name instead of adopting its settings', async () => {
    const t = fakeNetwire();
    const spec = networkSpec();
    const bridge = bridgeName(spec.networkId);
    await t.kernel.createBridge(bridge, { mtu: 9000, mac: '02:00:00:00:00:01', owner: 'h1' });
    await t.netwire.createNetwork(spec);
    expect(t.kernel.links.get(bridge)).toMatchObject({ mtu: 1436, mac: '7a:57:0a:4d:00:00' });
  });

  it('leaves nothing behind when any single step fails', async () => {
    const spec = networkSpec({ ipv6: [{ pool: 'fd77::/64', gateway: 'fd77::1/64' }] });
    const clean = fakeNetwire();
    await clean.netwire.createNetwork(spec);
    const steps = clean.kernel.calls;
    expect(steps).toEqual([
      'ensureFirewallChains',
      `createBridge ${bridgeName(spec.networkId)}`,
      `addAddress ${bridgeName(spec.networkId)}`,
      `addAddress ${bridgeName(spec.networkId)}`,
      `setUp ${bridgeName(spec.networkId)}`,
      `ensureFirewall ${bridgeName(spec.networkId)}`,
    ]);
    for (let i = 0; i < steps.length; i++) {
      const t = fakeNetwire();
      t.kernel.failAt(i);
      const err = await t.netwire.createNetwork(spec).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect(describeError(err)).toMatch(new RegExp(`cannot create network ${spec.networkId.slice(0, 12)}: .*injected failure`));
      expect({ step: steps[i], links: [...t.kernel.links.keys()], rules: t.kernel.ruleLines(), records: t.store.networks.size, events: t.events.kinds() }).toEqual({
        step: steps[i],
        links: [],
        rules: [],
        records: 0,
        events: [],
      });
    }
    // …and when the kernel work succeeded but the record cannot be written.
    const t = fakeNetwire();
    t.store.failOn('putNetwork');
    await expect(t.netwire.createNetwork(spec)).rejects.toThrow(/cannot create network/);
    expect([...t.kernel.links.keys(), ...t.kernel.ruleLines()]).toEqual([]);
  });

  it('still throws the original failure when an undo fails too, and reconcile clears the rest', async () => {
    const t = fakeNetwire();
    const spec = networkSpec();
    t.kernel.failOn('ensureFirewall');
    t.kernel.failOn('deleteLink');
    expect(describeError(await t.netwire.createNetwork(spec).catch((e: unknown) => e))).toMatch(/ensureFirewall .*injected failure/);
    expect(t.kernel.links.has(bridgeName(spec.networkId))).toBe(true);
    const r = await t.netwire.reconcile();
    expect(r.removedLinks).toEqual([bridgeName(spec.networkId)]);
    expect(t.kernel.links.size).toBe(0);
  });
});

describe('endpoints', () => {
  async function withNetwork(o: { internal?: boolean } = {}) {
    const t = fakeNetwire();
    const spec = networkSpec({ internal: o.internal ?? false, ipv6: [{ pool: 'fd77::/64', gateway: 'fd77::1/64' }] });
    const { bridge } = await t.netwire.createNetwork(spec);
    return { ...t, spec, bridge, networkId: spec.networkId };
  }

  it('creates a veth pair on the bridge with the network MTU and a Docker-style MAC, and reports the MAC it chose', async () => {
    const t = await withNetwork();
    const req = endpointReq(t.networkId);
    await expect(t.netwire.createEndpoint(req)).resolves.toEqual({ mac: '02:42:0a:4d:00:02' });
    const host = t.kernel.links.get(hostVethName(req.endpointId))!;
    const ctr = t.kernel.links.get(containerVethName(req.endpointId))!;
    expect(host).toMatchObject({ kind: 'veth', master: t.bridge, mtu: 1436, up: true });
    expect(ctr).toMatchObject({ kind: 'veth', master: null, mtu: 1436, mac: '02:42:0a:4d:00:02' });
    expect(t.events.of('endpoint.created')).toEqual([
      { networkId: t.networkId, endpointId: req.endpointId, hostVeth: host.name, mac: '02:42:0a:4d:00:02', address: '10.77.0.2/24' },
    ]);
  });

  it('uses the MAC Docker gave and then replies with none', async () => {
    const t = await withNetwork();
    const req = endpointReq(t.networkId, { mac: '02:42:AA:BB:CC:DD' });
    await expect(t.netwire.createEndpoint(req)).resolves.toEqual({ mac: null });
    expect(t.kernel.links.get(containerVethName(req.endpointId))!.mac).toBe('02:42:aa:bb:cc:dd');
  });

  it('picks a random local MAC for an endpoint without IPv4', async () => {
    const t = await withNetwork();
    const r = await t.netwire.createEndpoint({ ...endpointReq(t.networkId, { address: null }), addressV6: 'fd77::5/64' });
    expect(r.mac).toBe('fe:01:02:03:04:05');
  });

  it('refuses an unknown network with NotFoundError', async () => {
    const t = fakeNetwire();
    const err = await t.netwire.createEndpoint(endpointReq(newId())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(/is not known to netwire on this host/);
  });

  it('answers a repeated create from the record', async () => {
    const t = await withNetwork();
    const req = endpointReq(t.networkId);
    const first = await t.netwire.createEndpoint(req);
    const calls = t.kernel.calls.length;
    await expect(t.netwire.createEndpoint(req)).resolves.toEqual(first);
    expect(t.kernel.calls.length).toBe(calls);
  });

  it('rolls back whichever step fails and leaves the network as it was', async () => {
    const t0 = await withNetwork();
    const req = endpointReq(t0.networkId);
    const before = t0.kernel.calls.length;
    await t0.netwire.createEndpoint(req);
    const steps = t0.kernel.calls.slice(before);
    expect(steps).toEqual([`createVethPair ${hostVethName(req.endpointId)}`]);
    for (let i = 0; i <= steps.length; i++) {
      const t = await withNetwork();
      const r = { ...req, networkId: t.networkId };
      if (i < steps.length) t.kernel.failAt(i);
      else t.store.failOn('putEndpoint');
      await expect(t.netwire.createEndpoint(r)).rejects.toThrow(/cannot create endpoint/);
      expect([...t.kernel.links.keys()]).toEqual([t.bridge]);
      expect(t.kernel.firewall.has(t.bridge)).toBe(true);
      expect(t.store.endpoints.size).toBe(0);
      expect(t.events.of('endpoint.created')).toEqual([]);
    }
  });

  it('rebuilds a bridge that vanished instead of failing the container', async () => {
    const t = await withNetwork();
    await t.kernel.deleteLink(t.bridge);
    const req = endpointReq(t.networkId);
    await t.netwire.createEndpoint(req);
    expect(t.kernel.links.get(t.bridge)).toMatchObject({ up: true, mtu: 1436 });
    expect(t.kernel.addresses(t.bridge)).toEqual(['10.77.0.1/24', 'fd77::1/64']);
    expect(t.kernel.links.get(hostVethName(req.endpointId))!.master).toBe(t.bridge);
  });

  it('join names the container end and the first gateways without prefix', async () => {
    const t = await withNetwork();
    const req = endpointReq(t.networkId);
    await t.netwire.createEndpoint(req);
    const join = { networkId: t.networkId, endpointId: req.endpointId, sandboxKey: '/var/run/docker/netns/abc' };
    await expect(t.netwire.join(join)).resolves.toEqual({ srcName: containerVethName(req.endpointId), gateway: '10.77.0.1', gatewayV6: 'fd77::1', internal: false });
    expect(t.events.of('endpoint.joined')).toEqual([{ networkId: t.networkId, endpointId: req.endpointId, sandboxKey: join.sandboxKey }]);
  });

  it('join gives no gateway on an internal network', async () => {
    const t = await withNetwork({ internal: true });
    const req = endpointReq(t.networkId);
    await t.netwire.createEndpoint(req);
    await expect(t.netwire.join({ networkId: t.networkId, endpointId: req.endpointId, sandboxKey: '/x' })).resolves.toMatchObject({ gateway: null, gatewayV6: null });
  });

  it('join refuses an unknown endpoint', async () => {
    const t = await withNetwork();
    await expect(t.netwire.join({ networkId: t.networkId, endpointId: newId(), sandboxKey: '/x' })).rejects.toThrow(NotFoundError);
  });

  it('join remakes a veth pair lost since CreateEndpoint', async () => {
    const t = await withNetwork();
    const req = endpointReq(t.networkId);
    await t.netwire.createEndpoint(req);
    await t.kernel.deleteLink(hostVethName(req.endpointId));
    await t.netwire.join({ networkId: t.networkId, endpointId: req.endpointId, sandboxKey: '/x' });
    expect(t.kernel.links.get(containerVethName(req.endpointId))!.mac).toBe('02:42:0a:4d:00:02');
  });

  it('leave only reports; deleteEndpoint removes the pair, the record, and tolerates repeats and vanished veths', async () => {
    const t = await withNetwork();
    const a = endpointReq(t.networkId, { address: '10.77.0.2/24' });
    const b = endpointReq(t.networkId, { address: '10.77.0.3/24' });
    await t.netwire.createEndpoint(a);
    await t.netwire.createEndpoint(b);
    t.kernel.moveToContainer(containerVethName(a.endpointId));
    await t.netwire.leave({ networkId: t.networkId, endpointId: a.endpointId });
    expect(t.kernel.links.has(hostVethName(a.endpointId))).toBe(true);
    t.kernel.moveToHost(containerVethName(a.endpointId));
    await t.netwire.deleteEndpoint({ networkId: t.networkId, endpointId: a.endpointId });
    // The pair goes right after the reply (off Docker's path); idle() waits for it.
    await t.netwire.idle();
    expect(t.kernel.links.has(hostVethName(a.endpointId))).toBe(false);
    expect(t.kernel.links.has(containerVethName(a.endpointId))).toBe(false);
    // b's container died with its end inside: the pair is gone before DeleteEndpoint.
    t.kernel.moveToContainer(containerVethName(b.endpointId));
    t.kernel.destroyContainerEnd(containerVethName(b.endpointId));
    await t.netwire.deleteEndpoint({ networkId: t.networkId, endpointId: b.endpointId });
    await t.netwire.deleteEndpoint({ networkId: t.networkId, endpointId: b.endpointId });
    await t.netwire.leave({ networkId: t.networkId, endpointId: newId() });
    expect(t.store.endpoints.size).toBe(0);
    expect([...t.kernel.links.keys()]).toEqual([t.bridge]);
    expect(t.events.of('endpoint.deleted')).toHaveLength(2);
  });

  it('status lists networks with endpoint counts and endpoints with presence', async () => {
    const t = await withNetwork();
    const req = endpointReq(t.networkId);
    await t.netwire.createEndpoint(req);
    const s = await t.netwire.status();
    expect(s.networks).toEqual([{ networkId: t.networkId, bridge: t.bridge, wireId: 0x0a4d0000, gatewayMac: '7a:57:0a:4d:00:00', mtu: 1436, internal: false, subnets: ['10.77.0.0/24', 'fd77::/64'], endpoints: 1, multicast: false }]);
    expect(s.endpoints).toEqual([
      { networkId: t.networkId, endpointId: req.endpointId, address: '10.77.0.2/24', addressV6: null, mac: '02:42:0a:4d:00:02', hostVeth: hostVethName(req.endpointId), present: true },
    ]);
  });

  it('status says which networks carry multicast beyond the link (-o weave.multicast=true)', async () => {
    const t = fakeNetwire();
    const [on, off] = [networkSpec({ multicast: true, ipv4: [{ pool: '10.78.0.0/24', gateway: null }] }), networkSpec()];
    for (const spec of [on, off]) await t.netwire.createNetwork(spec);
    const s = await t.netwire.status();
    expect(Object.fromEntries(s.networks.map((n) => [n.networkId, n.multicast]))).toEqual({ [on.networkId]: true, [off.networkId]: false });
  });
});

describe('deleteNetwork', () => {
  it('removes leftover endpoints, rules, bridge and records; unknown is fine', async () => {
    const t = fakeNetwire();
    const spec = networkSpec();
    const { bridge } = await t.netwire.createNetwork(spec);
    const other = await t.netwire.createNetwork(networkSpec({ ipv4: [{ pool: '10.78.0.0/24', gateway: '10.78.0.1/24' }] }));
    await t.netwire.createEndpoint(endpointReq(spec.networkId));
    // A veth on the bridge that we have no record of (a crash between link and record).
    await t.kernel.createVethPair('wvh00000000000', 'wvc00000000000', { mtu: 1436, peerMac: '02:00:00:00:00:09', owner: 'h1', master: bridge });
    await t.netwire.deleteNetwork({ networkId: spec.networkId });
    expect([...t.kernel.links.keys()]).toEqual([other.bridge]);
    expect([...t.kernel.firewall.keys()]).toEqual([other.bridge]);
    expect(t.store.networks.has(spec.networkId)).toBe(false);
    expect(t.store.endpoints.size).toBe(0);
    expect(t.events.of('network.deleted')).toEqual([{ networkId: spec.networkId, bridge }]);
    await expect(t.netwire.deleteNetwork({ networkId: spec.networkId })).resolves.toEqual({});
    await expect(t.netwire.deleteNetwork({ networkId: newId() })).resolves.toEqual({});
    expect(t.events.of('network.deleted')).toHaveLength(1);
  });

  it('tries every step and reports what failed', async () => {
    const t = fakeNetwire();
    const spec = networkSpec();
    const { bridge } = await t.netwire.createNetwork(spec);
    t.kernel.failOn('removeFirewall');
    const err = await t.netwire.deleteNetwork({ networkId: spec.networkId }).catch((e: unknown) => e);
    expect(describeError(err)).toMatch(/was not removed cleanly: .*injected failure/);
    expect(t.kernel.links.has(bridge)).toBe(false);
    expect(t.store.networks.size).toBe(0);
    // The rules are left for reconcile, which finds them by their tag.
    expect((await t.netwire.reconcile()).removedFirewall).toEqual([bridge]);
    expect(t.kernel.ruleLines()).toEqual([]);
  });
});

describe('reconcile', () => {
  it('removes orphans, keeps what is known, restores missing bridges, forgets dead endpoints', async () => {
    const t = fakeNetwire();
    const kept = networkSpec();
    const lost = networkSpec({ ipv4: [{ pool: '10.78.0.0/24', gateway: '10.78.0.1/24' }] });
    const forgottenNet = networkSpec({ ipv4: [{ pool: '10.79.0.0/24', gateway: '10.79.0.1/24' }] });
    await t.netwire.createNetwork(kept);
    await t.netwire.createNetwork(lost);
    await t.netwire.createNetwork(forgottenNet);
    const eKept = endpointReq(kept.networkId);
    const eLost = endpointReq(lost.networkId, { address: '10.78.0.2/24' });
    const eDead = endpointReq(forgottenNet.networkId, { address: '10.79.0.2/24' });
    for (const e of [eKept, eLost, eDead]) await t.netwire.createEndpoint(e);
    // The crash: one network's record lost, another's bridge lost, orphan links, a foreign link.
    t.store.networks.delete(forgottenNet.networkId);
    t.kernel.destroyContainerEnd(containerVethName(eDead.endpointId));
    await t.kernel.deleteLink(bridgeName(lost.networkId));
    await t.kernel.createBridge('wvb00000000000', { mtu: 1500, mac: '02:00:00:00:00:01', owner: 'h1' });
    await t.kernel.createVethPair('wvh11111111111', 'wvc11111111111', { mtu: 1500, peerMac: '02:00:00:00:00:02', owner: 'h1', master: 'wvb00000000000' });
    await t.kernel.createBridge('docker0', { mtu: 1500, mac: '02:00:00:00:00:03', owner: 'h1' });
    t.events.seen.length = 0;

    const r = await t.netwire.reconcile();

    expect(r).toEqual({
      removedLinks: ['wvh11111111111', 'wvc11111111111', bridgeName(forgottenNet.networkId), 'wvb00000000000'],
      removedFirewall: [bridgeName(forgottenNet.networkId)],
      restoredNetworks: [lost.networkId],
      reattachedEndpoints: [eLost.endpointId],
      forgottenEndpoints: [eDead.endpointId],
      removedPorts: [],
      restoredPorts: [],
      problems: 0,
    });
    expect([...t.kernel.links.keys()].sort()).toEqual(
      [
        'docker0',
        bridgeName(kept.networkId),
        hostVethName(eKept.endpointId),
        containerVethName(eKept.endpointId),
        bridgeName(lost.networkId),
        hostVethName(eLost.endpointId),
        containerVethName(eLost.endpointId),
      ].sort(),
    );
    expect(t.kernel.links.get(bridgeName(lost.networkId))).toMatchObject({ up: true, mac: '7a:57:0a:4e:00:00' });
    expect(t.kernel.addresses(bridgeName(lost.networkId))).toEqual(['10.78.0.1/24']);
    expect(t.kernel.links.get(hostVethName(eLost.endpointId))!.master).toBe(bridgeName(lost.networkId));
    expect([...t.kernel.firewall.keys()].sort()).toEqual([bridgeName(kept.networkId), bridgeName(lost.networkId)].sort());
    expect([...t.store.endpoints.keys()].sort()).toEqual([eKept.endpointId, eLost.endpointId].sort());
    const { problems, ...event } = r;
    expect(t.events.seen).toEqual([{ kind: 'reconciled', data: event }]);
  });

  it('is a no-op the second time', async () => {
    const t = fakeNetwire();
    await t.netwire.createNetwork(networkSpec());
    await t.netwire.reconcile();
    const r = await t.netwire.reconcile();
    expect(r).toMatchObject({ removedLinks: [], restoredNetworks: [], forgottenEndpoints: [], removedFirewall: [], reattachedEndpoints: [] });
  });

  it('fails loudly when the firewall chains cannot be made', async () => {
    const t = fakeNetwire();
    t.kernel.failOn('ensureFirewallChains');
    await expect(t.netwire.reconcile()).rejects.toThrow(/injected failure/);
  });

  it('counts a repair that fails and carries on with the others', async () => {
    const t = fakeNetwire();
    await t.kernel.createBridge('wvb00000000000', { mtu: 1500, mac: '02:00:00:00:00:01', owner: 'h1' });
    await t.kernel.createBridge('wvb22222222222', { mtu: 1500, mac: '02:00:00:00:00:02', owner: 'h1' });
    t.kernel.failOn('deleteLink', 'wvb00000000000');
    const r = await t.netwire.reconcile();
    expect(r.problems).toBe(1);
    expect(r.removedLinks).toEqual(['wvb22222222222']);
  });
});

describe('concurrency', () => {
  it('serialises calls per network: concurrent endpoints and a racing duplicate create all land once', async () => {
    const t = fakeNetwire();
    t.kernel.delayMs = 1;
    const spec = networkSpec();
    const reqs = Array.from({ length: 8 }, (_, i) => endpointReq(spec.networkId, { address: `10.77.0.${i + 2}/24` }));
    await Promise.all([t.netwire.createNetwork(spec), t.netwire.createNetwork(spec)]);
    const replies = await Promise.all(reqs.map((r) => t.netwire.createEndpoint(r)));
    expect(replies.map((r) => r.mac)).toEqual(reqs.map((_, i) => `02:42:0a:4d:00:${(i + 2).toString(16).padStart(2, '0')}`));
    expect(t.kernel.calls.filter((c) => c.startsWith('createBridge'))).toHaveLength(1);
    expect([...t.kernel.links.values()].filter((l) => l.master === bridgeName(spec.networkId))).toHaveLength(8);
    // Deleting while endpoints are still being created: the network goes last, with all of them.
    const more = Array.from({ length: 3 }, (_, i) => endpointReq(spec.networkId, { address: `10.77.0.${i + 20}/24` }));
    await Promise.all([...more.map((r) => t.netwire.createEndpoint(r)), t.netwire.deleteNetwork({ networkId: spec.networkId })]);
    expect(t.kernel.links.size).toBe(0);
    expect(t.store.endpoints.size).toBe(0);
  });
});
