import { openBucket } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { waitFor } from '@weave/testing';
import { inNs, isRoot, ourLinks, ping, rulesIn, sh, useNetnsLab } from './netns-lab';
import { networkSpec, newId } from './helpers';

/** netwire on a real kernel, in throwaway namespaces (see netns-lab.ts). */
// Each test runs a few dozen ip/iptables commands and pings; generous for a loaded CI machine.
jest.setTimeout(30_000);
const describeRoot = isRoot ? describe : describe.skip;
if (!isRoot) console.warn('netwire real-kernel tests SKIPPED: they need root (network namespaces, veths, iptables)');

describeRoot('netwire on a real kernel (throwaway namespaces)', () => {
  const lab = useNetnsLab();
  const { host, plugContainer } = lab;

  const spec = networkSpec;

  it('wires two containers through the bridge, and takes everything away again', async () => {
    const h = await host();
    const net = spec();
    const { bridge, mtu } = await h.client.createNetwork(net);
    expect(mtu).toBe(1436); // no default route in the namespace: 1500 less the sleeve's overhead

    const a = { networkId: net.networkId, endpointId: newId(), address: '10.77.0.2/24', addressV6: null, mac: null };
    const b = { networkId: net.networkId, endpointId: newId(), address: '10.77.0.3/24', addressV6: null, mac: '02:42:aa:bb:cc:03' };
    await expect(h.client.createEndpoint(a)).resolves.toEqual({ mac: '02:42:0a:4d:00:02' });
    await expect(h.client.createEndpoint(b)).resolves.toEqual({ mac: null });
    const ja = await h.client.join({ networkId: net.networkId, endpointId: a.endpointId, sandboxKey: '/var/run/docker/netns/a' });
    const jb = await h.client.join({ networkId: net.networkId, endpointId: b.endpointId, sandboxKey: '/var/run/docker/netns/b' });
    expect(ja).toEqual({ srcName: `wvc${a.endpointId.slice(0, 11)}`, gateway: '10.77.0.1', gatewayV6: null, internal: false });

    const ca = await plugContainer(h.ns, ja.srcName, a.address, ja.gateway!);
    const cb = await plugContainer(h.ns, jb.srcName, b.address, jb.gateway!);
    const eth0 = JSON.parse(await inNs(ca, 'ip', '-j', 'link', 'show', 'eth0'))[0];
    expect(eth0).toMatchObject({ address: '02:42:0a:4d:00:02', mtu: 1436 });
    const br = JSON.parse(await sh('ip', '-j', '-n', h.ns, 'link', 'show', bridge))[0];
    expect(br).toMatchObject({ mtu: 1436, address: '7a:57:0a:4d:00:00' }); // the anycast gateway MAC of 10.77.0.0/24

    expect(await ping(ca, '10.77.0.3')).toBe(true);
    expect(await ping(cb, '10.77.0.2')).toBe(true);
    expect(await ping(ca, '10.77.0.1')).toBe(true);
    // ARP went across the bridge: a knows b's MAC.
    expect(await inNs(ca, 'ip', 'neigh', 'show', '10.77.0.3')).toMatch(/lladdr 02:42:aa:bb:cc:03/);

    const rules = await rulesIn(h.ns);
    const tag = `-m comment --comment "weave:${bridge}"`;
    expect(rules).toEqual(
      expect.arrayContaining([
        '-P FORWARD DROP',
        '-A FORWARD -j WEAVE-FORWARD',
        `-A WEAVE-FORWARD -i ${bridge} -o ${bridge} ${tag} -j ACCEPT`,
        `-A WEAVE-FORWARD -i ${bridge} ! -o ${bridge} ${tag} -j ACCEPT`,
        `-A WEAVE-FORWARD -o ${bridge} -m conntrack --ctstate RELATED,ESTABLISHED ${tag} -j ACCEPT`,
        '-A POSTROUTING -j WEAVE-POSTROUTING',
        `-A WEAVE-POSTROUTING -s 10.77.0.0/24 ! -o ${bridge} ${tag} -j MASQUERADE`,
      ]),
    );
    if (process.env.NETWIRE_PRINT_RULES) console.log(rules.join('\n'));

    // Our ACCEPT is what carries container-to-container traffic: without it FORWARD DROP wins
    // (br_netfilter), and reconcile puts it back.
    await h.kernel.removeFirewall(bridge);
    expect(await ping(ca, '10.77.0.3')).toBe(false);
    expect(await ping(ca, '10.77.0.1')).toBe(true); // to the host itself is INPUT, not FORWARD
    await h.service.netwire.reconcile();
    expect(await ping(ca, '10.77.0.3')).toBe(true);

    // Docker: Leave, move a's end back under its old name, DeleteEndpoint. b's container dies
    // with its end inside, so its pair is gone before DeleteEndpoint.
    await h.client.leave({ networkId: net.networkId, endpointId: a.endpointId });
    await inNs(ca, 'ip', 'link', 'set', 'eth0', 'down');
    await inNs(ca, 'ip', 'link', 'set', 'eth0', 'netns', h.ns);
    await inNs(h.ns, 'ip', 'link', 'set', 'eth0', 'name', ja.srcName);
    await h.client.deleteEndpoint({ networkId: net.networkId, endpointId: a.endpointId });
    await sh('ip', 'netns', 'del', cb);
    await waitFor(async () => !(await ourLinks(h.ns)).includes(`wvh${b.endpointId.slice(0, 11)}`), { what: 'b pair gone with its namespace' });
    await h.client.leave({ networkId: net.networkId, endpointId: b.endpointId });
    await h.client.deleteEndpoint({ networkId: net.networkId, endpointId: b.endpointId });
    await h.client.deleteNetwork({ networkId: net.networkId });

    expect(await ourLinks(h.ns)).toEqual([]);
    expect((await rulesIn(h.ns)).filter((r) => r.includes('weave:'))).toEqual([]);
    await expect(h.client.status({})).resolves.toEqual({ networks: [], endpoints: [] });
    await waitFor(() => h.events.some((e) => e.kind === 'network.deleted'), { what: 'network.deleted event' });
    expect(h.events.map((e) => e.kind)).toEqual(
      expect.arrayContaining(['service.started', 'network.created', 'endpoint.created', 'endpoint.joined', 'endpoint.left', 'endpoint.deleted', 'reconciled']),
    );
  });

  it('keeps an internal network to itself', async () => {
    const h = await host();
    const open = spec({ ipv4: [{ pool: '10.78.0.0/24', gateway: '10.78.0.1/24' }] });
    const internal = spec({ internal: true });
    await h.client.createNetwork(open);
    const { bridge } = await h.client.createNetwork(internal);
    const ep = (networkId: string, address: string) => ({ networkId, endpointId: newId(), address, addressV6: null, mac: null });
    const a = ep(internal.networkId, '10.77.0.2/24');
    const b = ep(internal.networkId, '10.77.0.3/24');
    const o = ep(open.networkId, '10.78.0.2/24');
    const plug = async (e: typeof a, gw: string) => {
      await h.client.createEndpoint(e);
      const j = await h.client.join({ networkId: e.networkId, endpointId: e.endpointId, sandboxKey: '/x' });
      return { j, ns: await plugContainer(h.ns, j.srcName, e.address, j.gateway ?? gw) };
    };
    const pa = await plug(a, '10.77.0.1');
    await plug(b, '10.77.0.1');
    const po = await plug(o, '10.78.0.1');
    expect(pa.j.gateway).toBeNull();
    const v4 = JSON.parse(await sh('ip', '-j', '-n', h.ns, 'addr', 'show', bridge))[0].addr_info.filter((x: { family: string }) => x.family === 'inet');
    expect(v4).toEqual([]);
    expect(await ping(pa.ns, '10.77.0.3')).toBe(true);
    // Even with the host routing towards the internal bridge, the open network's outbound
    // ACCEPT must not let traffic in: the internal DROPs sit above it and count the packet.
    await inNs(h.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    await inNs(h.ns, 'ip', 'route', 'add', '10.77.0.0/24', 'dev', bridge);
    const dropped = async (): Promise<number> => {
      const rule = (await inNs(h.ns, 'iptables', '-S', 'WEAVE-FORWARD', '-v')).split('\n').find((l) => l.includes(`! -i ${bridge} -o ${bridge} `));
      return Number(/ -c (\d+) /.exec(rule ?? '')?.[1]);
    };
    const before = await dropped();
    expect(await ping(po.ns, '10.77.0.2')).toBe(false);
    expect(await dropped()).toBeGreaterThan(before);
    const chain = (await inNs(h.ns, 'iptables', '-S', 'WEAVE-FORWARD')).split('\n').filter((l) => l.startsWith('-A'));
    expect(chain.slice(0, 2).every((l) => l.includes(`weave:${bridge}`) && l.endsWith('-j DROP'))).toBe(true);
  });

  it('keeps two weave networks apart even though the host routes between them', async () => {
    const h = await host();
    await inNs(h.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    const one = spec();
    const two = spec({ ipv4: [{ pool: '10.78.0.0/24', gateway: '10.78.0.1/24' }] });
    const plug = async (networkId: string, address: string, gateway: string) => {
      const e = { networkId, endpointId: newId(), address, addressV6: null, mac: null };
      await h.client.createEndpoint(e);
      const j = await h.client.join({ networkId, endpointId: e.endpointId, sandboxKey: '/x' });
      return plugContainer(h.ns, j.srcName, address, gateway);
    };
    await h.client.createNetwork(one);
    await h.client.createNetwork(two);
    const a = await plug(one.networkId, '10.77.0.2/24', '10.77.0.1');
    const b = await plug(one.networkId, '10.77.0.3/24', '10.77.0.1');
    const c = await plug(two.networkId, '10.78.0.2/24', '10.78.0.1');
    expect(await ping(a, '10.77.0.3')).toBe(true);
    expect(await ping(c, '10.78.0.1')).toBe(true);
    expect(await ping(c, '10.77.0.2')).toBe(false);
    expect(await ping(a, '10.78.0.2')).toBe(false);
    expect(await ping(b, '10.77.0.2')).toBe(true); // the isolation chain lets a bridge's own traffic through
    const drops = (await inNs(h.ns, 'iptables', '-S', 'WEAVE-ISOLATE', '-v')).split('\n').find((l) => l.includes('-j DROP') && !l.includes('comment'));
    expect(Number(/ -c (\d+) /.exec(drops ?? '')?.[1])).toBeGreaterThanOrEqual(2);
  });

  it('keeps two --ipv6 networks apart over IPv6 as well, though the host forwards IPv6', async () => {
    const h = await host();
    await inNs(h.ns, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1');
    const one = spec({ ipv6: [{ pool: 'fd77::/64', gateway: 'fd77::1/64' }] });
    const two = spec({ ipv4: [{ pool: '10.78.0.0/24', gateway: '10.78.0.1/24' }], ipv6: [{ pool: 'fd78::/64', gateway: 'fd78::1/64' }] });
    const plug = async (networkId: string, address: string, addressV6: string) => {
      const e = { networkId, endpointId: newId(), address, addressV6, mac: null };
      await h.client.createEndpoint(e);
      const j = await h.client.join({ networkId, endpointId: e.endpointId, sandboxKey: '/x' });
      const ns = await plugContainer(h.ns, j.srcName, address, j.gateway!);
      await inNs(ns, 'ip', 'addr', 'add', addressV6, 'dev', 'eth0', 'nodad');
      await inNs(ns, 'ip', '-6', 'route', 'add', 'default', 'via', j.gatewayV6!);
      return ns;
    };
    await h.client.createNetwork(one);
    await h.client.createNetwork(two);
    const a = await plug(one.networkId, '10.77.0.2/24', 'fd77::2/64');
    const b = await plug(one.networkId, '10.77.0.3/24', 'fd77::3/64');
    const c = await plug(two.networkId, '10.78.0.2/24', 'fd78::2/64');
    expect(await ping(a, 'fd77::3')).toBe(true);
    expect(await ping(c, 'fd78::1')).toBe(true);
    expect(await ping(c, 'fd77::2')).toBe(false);
    expect(await ping(a, 'fd78::2')).toBe(false);
    expect(await ping(b, 'fd77::2')).toBe(true);
    const drops = (await inNs(h.ns, 'ip6tables', '-S', 'WEAVE-ISOLATE', '-v')).split('\n').find((l) => l.includes('-j DROP') && !l.includes('comment'));
    expect(Number(/ -c (\d+) /.exec(drops ?? '')?.[1])).toBeGreaterThanOrEqual(2);
  });

  it('cleans up after a crash and restores what the records say', async () => {
    const h = await host();
    const kept = spec();
    const lost = spec({ ipv4: [{ pool: '10.78.0.0/24', gateway: '10.78.0.1/24' }] });
    const forgotten = spec({ ipv4: [{ pool: '10.79.0.0/24', gateway: '10.79.0.1/24' }] });
    for (const n of [kept, lost, forgotten]) await h.client.createNetwork(n);
    const eKept = { networkId: kept.networkId, endpointId: newId(), address: '10.77.0.2/24', addressV6: null, mac: null };
    const eLost = { networkId: lost.networkId, endpointId: newId(), address: '10.78.0.2/24', addressV6: null, mac: null };
    await h.client.createEndpoint(eKept);
    await h.client.createEndpoint(eLost);
    const br = (id: string) => `wvb${id.slice(0, 11)}`;

    // The crash: netwire stops, a record is lost, a bridge is deleted by hand, and links with
    // our names but no records are left behind (plus a link that is not ours at all).
    await h.service.stop();
    const kv = await openBucket(lab.nc, Buckets.netwire);
    await kv.delete(`${h.hostName}.net.${forgotten.networkId}`);
    await inNs(h.ns, 'ip', 'link', 'del', br(lost.networkId));
    // Leftovers of this host carry its tag, as everything netwire makes does; an untagged link
    // and one tagged by another weave host on the machine are somebody else's and stay.
    await inNs(h.ns, 'ip', 'link', 'add', 'wvb00000000000', 'type', 'bridge');
    await inNs(h.ns, 'ip', 'link', 'add', 'wvh11111111111', 'type', 'veth', 'peer', 'name', 'wvc11111111111');
    for (const l of ['wvb00000000000', 'wvh11111111111', 'wvc11111111111']) await inNs(h.ns, 'ip', 'link', 'set', 'dev', l, 'alias', `weave:${h.hostName}`);
    await inNs(h.ns, 'ip', 'link', 'add', 'wvb22222222222', 'type', 'bridge');
    await inNs(h.ns, 'ip', 'link', 'set', 'dev', 'wvb22222222222', 'alias', 'weave:another-host');
    await inNs(h.ns, 'ip', 'link', 'add', 'wvb33333333333', 'type', 'bridge');
    await inNs(h.ns, 'ip', 'link', 'add', 'keep0', 'type', 'bridge');
    await h.kernel.ensureFirewall({ bridge: 'wvb00000000000', internal: false, masquerade: ['10.99.0.0/24'] });
    h.events.length = 0;

    await h.start();

    const reconciled = await waitFor(() => h.events.find((e) => e.kind === 'reconciled'), { what: 'reconciled event' });
    expect(reconciled.data).toEqual({
      removedLinks: expect.arrayContaining(['wvh11111111111', 'wvc11111111111', br(forgotten.networkId), 'wvb00000000000']),
      removedFirewall: expect.arrayContaining([br(forgotten.networkId), 'wvb00000000000']),
      restoredNetworks: [lost.networkId],
      reattachedEndpoints: [eLost.endpointId],
      forgottenEndpoints: [],
      removedPorts: [],
      restoredPorts: [],
    });
    expect((reconciled.data as { removedLinks: string[] }).removedLinks).toHaveLength(4);
    const links = await ourLinks(h.ns);
    expect(links.sort()).toEqual(
      ['wvb22222222222', 'wvb33333333333', br(kept.networkId), br(lost.networkId), `wvh${eKept.endpointId.slice(0, 11)}`, `wvc${eKept.endpointId.slice(0, 11)}`, `wvh${eLost.endpointId.slice(0, 11)}`, `wvc${eLost.endpointId.slice(0, 11)}`].sort(),
    );
    for (const kept of ['keep0', 'wvb22222222222', 'wvb33333333333']) expect(JSON.parse(await sh('ip', '-j', '-n', h.ns, 'link', 'show', kept))[0].ifname).toBe(kept);
    const restored = JSON.parse(await sh('ip', '-j', '-n', h.ns, 'addr', 'show', br(lost.networkId)))[0];
    expect(restored.addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`)).toContain('10.78.0.1/24');
    expect(restored.operstate === 'UP' || restored.flags.includes('UP')).toBe(true);
    const hostVeth = JSON.parse(await sh('ip', '-j', '-n', h.ns, 'link', 'show', `wvh${eLost.endpointId.slice(0, 11)}`))[0];
    expect(hostVeth.master).toBe(br(lost.networkId));
    const tagged = (await rulesIn(h.ns)).filter((r) => r.includes('weave:'));
    expect(new Set(tagged.map((r) => /weave:(\w+)/.exec(r)![1]))).toEqual(new Set([br(kept.networkId), br(lost.networkId)]));
  });
});
