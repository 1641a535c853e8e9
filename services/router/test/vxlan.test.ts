import { waitFor } from '@weave/testing';
import { Exec, execFileNoShell } from '@weave/kernel-cmd';
import { LinuxFastPathGuard } from '../src/vxlan-guard';
import { FastPathSpec, LinuxFastPathPlumbing, vxlanName } from '../src/vxlan';
import { ebtablesCount, iptablesCount, linkStats, NetnsLab, sendUdp } from './netns-lab';

/**
 * The fast path's kernel parts in throwaway namespaces: hosts h1, h2 (peers) and h3 (not a
 * peer) on one underlay; a "container" c1 on h1's bridge and c2 on h2's; s1 behind a port that
 * stands in for the sleeve's TAP. IPv6 is off everywhere, so the only frames are the tests'.
 */
const lab = new NetnsLab('vx');
const under = { h1: '10.254.201.1', h2: '10.254.201.2', h3: '10.254.201.3' } as const;
const inner = { c1: '10.254.210.1', c2: '10.254.210.2', h3: '10.254.210.3', gw: '10.254.210.254' } as const;
const wx = vxlanName(42);
let ns: Record<'h1' | 'h2' | 'h3' | 'c1' | 'c2' | 's1', string>;
let plumbing: { h1: LinuxFastPathPlumbing; h2: LinuxFastPathPlumbing };
let guard: { h1: LinuxFastPathGuard; h2: LinuxFastPathGuard };
const spec = (local: string): FastPathSpec => ({ name: wx, vni: 42, local, port: 4789, bridge: 'br0', mtu: 1450 });

/** The UDP datagrams to port 9 from `src` that `container` received (a counting rule in its INPUT). */
const received = (container: string, src: string) => iptablesCount(lab, container, 'INPUT', `-s ${src}/32`);

beforeAll(async () => {
  const names = ['h1', 'h2', 'h3', 'c1', 'c2', 's1'] as const;
  ns = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await lab.netns(n, { ipv6: false })]))) as typeof ns;
  await lab.underlay([
    { ns: ns.h1, address: under.h1 },
    { ns: ns.h2, address: under.h2 },
    { ns: ns.h3, address: under.h3 },
  ]);
  plumbing = { h1: new LinuxFastPathPlumbing({ netns: ns.h1 }), h2: new LinuxFastPathPlumbing({ netns: ns.h2 }) };
  guard = { h1: new LinuxFastPathGuard({ netns: ns.h1 }), h2: new LinuxFastPathGuard({ netns: ns.h2 }) };
  // Guarded before any bridge is up, as the router does at start: a bridge's first frames (its
  // IGMP reports) have the gateway's MAC, and the kernel would learn them behind the other host.
  await guard.h1.guard({ local: under.h1, port: 4789, peers: [under.h2] });
  await guard.h2.guard({ local: under.h2, port: 4789, peers: [under.h1] });
  for (const [h, c, ip] of [['h1', 'c1', inner.c1], ['h2', 'c2', inner.c2]] as const) {
    // Every host's bridge has the network's gateway MAC, as netwire makes it.
    await lab.sh(ns[h], 'ip link add br0 address 7a:57:00:00:00:2a mtu 1450 type bridge && ip link set br0 up');
    await lab.veth(ns[h], `v${c}`, ns[c], 'eth0', 1450);
    await lab.sh(ns[h], `ip link set v${c} master br0`);
    await lab.sh(ns[c], `ip addr add ${ip}/24 dev eth0`);
    for (const src of [inner.c1, inner.c2, inner.h3, inner.gw]) await lab.sh(ns[c], `iptables -A INPUT -s ${src} -p udp --dport 9`);
  }
}, 60_000);

afterAll(() => lab.cleanup(), 60_000);

describe('LinuxFastPathPlumbing', () => {
  it('creates the VXLAN device isolated on the bridge, and checks it with one command after', async () => {
    await plumbing.h1.ensure(spec(under.h1));
    await plumbing.h2.ensure(spec(under.h2));
    const [link] = JSON.parse(await lab.sh(ns.h1, `ip -d -j link show dev ${wx}`));
    expect(link).toMatchObject({
      mtu: 1450,
      master: 'br0',
      flags: expect.arrayContaining(['UP']),
      linkinfo: { info_kind: 'vxlan', info_data: { id: 42, local: under.h1, port: 4789, learning: true, ttl: 64 }, info_slave_data: { isolated: true, learning: true } },
    });

    const commands: string[] = [];
    const counting = new LinuxFastPathPlumbing({ netns: ns.h1, exec: recording(commands) });
    await counting.ensure(spec(under.h1));
    expect(commands).toHaveLength(1);
  });

  it('recreates a device whose VNI changed and corrects its MTU in place', async () => {
    const ifindex = async () => JSON.parse(await lab.sh(ns.h1, `ip -j link show dev ${wx}`))[0].ifindex as number;
    const before = await ifindex();
    await plumbing.h1.ensure({ ...spec(under.h1), vni: 43 });
    expect(await ifindex()).not.toBe(before);
    await plumbing.h1.ensure(spec(under.h1));
    const again = await ifindex();
    await lab.sh(ns.h1, `ip link set dev ${wx} mtu 1400`);
    await plumbing.h1.ensure(spec(under.h1));
    const [link] = JSON.parse(await lab.sh(ns.h1, `ip -d -j link show dev ${wx}`));
    expect({ ifindex: link.ifindex, mtu: link.mtu, vni: link.linkinfo.info_data.id }).toEqual({ ifindex: again, mtu: 1450, vni: 42 });
  });

  it('leaves no device behind when a later step fails', async () => {
    const name = vxlanName(7);
    await expect(plumbing.h1.ensure({ ...spec(under.h1), name, vni: 7, bridge: 'nosuchbridge' })).rejects.toThrow(`cannot put ${name} on nosuchbridge`);
    expect(await plumbing.h1.list()).toEqual([wx]);
  });

  it('carries the containers’ frames between hosts once peers are set, and none after they are cleared', async () => {
    await plumbing.h1.setPeers(wx, [under.h2]);
    await plumbing.h2.setPeers(wx, [under.h1]);
    await plumbing.h2.setPeers(wx, [under.h1]); // idempotent: no duplicate entry
    expect(await floodEntries(ns.h2)).toEqual([under.h1]);
    const [vx1, vx2] = [await linkStats(lab, ns.h1, wx), await linkStats(lab, ns.h2, wx)];

    await waitFor(async () => (await sendUdp(lab, ns.c1, inner.c2, 9), (await received(ns.c2, inner.c1)) > 0), { what: 'c2 to receive from c1 over VXLAN', timeoutMs: 10_000 });
    // c1 resolved c2's address: the ARP reply came back over VXLAN too.
    expect(await lab.sh(ns.c1, `ip -j neigh show ${inner.c2}`)).toMatch(/REACHABLE|STALE|DELAY/);
    expect((await linkStats(lab, ns.h1, wx)).tx).toBeGreaterThan(vx1.tx);
    expect((await linkStats(lab, ns.h2, wx)).rx).toBeGreaterThan(vx2.rx);
    // h1 learned c2's MAC behind h2 from what it received.
    expect(await lab.sh(ns.h1, `bridge fdb show dev ${wx} self`)).toMatch(new RegExp(`^(?!00:00:00:00:00:00).* dst ${under.h2.replace(/\./g, '\\.')}`, 'm'));

    // Both sides drop each other, as two routers do (h2 first, so nothing is learned again on h1).
    await plumbing.h2.setPeers(wx, []);
    await plumbing.h1.setPeers(wx, []);
    expect(await lab.sh(ns.h1, `bridge fdb show dev ${wx} self`)).not.toContain('dst');
    const got = await received(ns.c2, inner.c1);
    const dropped = (await linkStats(lab, ns.h1, wx)).txDropped;
    await waitFor(async () => (await sendUdp(lab, ns.c1, inner.c2, 9), (await linkStats(lab, ns.h1, wx)).txDropped > dropped), {
      what: `${wx} to drop frames with no peer to send them to`,
      timeoutMs: 10_000,
    });
    expect(await received(ns.c2, inner.c1)).toBe(got);
    await plumbing.h1.setPeers(wx, [under.h2]);
    await plumbing.h2.setPeers(wx, [under.h1]);
  });

  it('keeps a broadcast that arrives over VXLAN from the isolated sleeve port, not from local ones', async () => {
    const tap = 'wvs0000002a'; // a veth to s1 stands in for the sleeve's TAP: isolation is per bridge port
    await lab.veth(ns.h1, tap, ns.s1, 'eth0', 1450);
    await lab.sh(ns.h1, `ip link set ${tap} master br0`);
    /** `from` ARPs for `target` until h1's bridge forwards it out of `port`: how many went to c1 and to the TAP. */
    const arp = async (from: string, target: string, port: string) => {
      for (const out of ['vc1', tap]) await lab.sh(ns.h1, `ebtables -A FORWARD -o ${out} -p ARP --arp-ip-dst ${target}`);
      const count = (out: string) => ebtablesCount(lab, ns.h1, 'FORWARD', `-o ${out} --arp-ip-dst ${target} `);
      await waitFor(async () => (await sendUdp(lab, from, target, 9), (await count(port)) > 0), { what: `ARP for ${target} to leave by ${port}`, timeoutMs: 10_000 });
      return { c1: await count('vc1'), tap: await count(tap) };
    };
    // Not isolated yet: c2's ARP broadcast crosses VXLAN and goes out of the TAP too (the loop isolation prevents).
    expect((await arp(ns.c2, '10.254.210.77', tap)).tap).toBeGreaterThan(0);

    await plumbing.h1.isolate(tap);
    expect(await lab.sh(ns.h1, `cat /sys/class/net/${tap}/brport/isolated`)).toBe('1\n');
    expect(await arp(ns.c2, '10.254.210.78', 'vc1')).toEqual({ c1: expect.any(Number), tap: 0 });
    // A local broadcast still reaches the sleeve: only isolated ports are kept apart.
    expect((await arp(ns.c1, '10.254.210.79', tap)).tap).toBeGreaterThan(0);
  });

  it('lists its devices and removes them, also when already gone', async () => {
    // Someone else's VXLAN device, not named like ours, is not listed.
    await lab.sh(ns.h1, `ip link add wvxother type vxlan id 9 local ${under.h1} dstport 4790`);
    expect(await plumbing.h1.list()).toEqual([wx]);
    await lab.sh(ns.h1, 'ip link del wvxother');
    await plumbing.h2.remove(wx);
    await plumbing.h2.remove(wx);
    expect(await plumbing.h2.list()).toEqual([]);
    await expect(plumbing.h2.remove('eth0')).rejects.toThrow('not a weave VXLAN device');
    await plumbing.h2.ensure(spec(under.h2));
    await plumbing.h2.setPeers(wx, [under.h1]);
  });
});

/** The rules that drop gateway frames leaving through a VXLAN port, and arriving from one. */
const GATEWAY_OUT = '-s 7a:57:00:00:00:00/ff:ff:00:00:00:00 -o wvx+ -j DROP';
const GATEWAY_IN = '-s 7a:57:00:00:00:00/ff:ff:00:00:00:00 -i wvx+ -j DROP';

describe('LinuxFastPathGuard', () => {
  it('never lets a gateway MAC leave through a VXLAN port, nor accepts one from it', async () => {
    const [sent, taken] = [await ebtablesCount(lab, ns.h2, 'WEAVE-FASTPATH', GATEWAY_OUT), await ebtablesCount(lab, ns.h1, 'WEAVE-FASTPATH', GATEWAY_IN)];
    // h2's bridge sends as the gateway (7a:57:…): its ARP for c1 is flooded to every port.
    await lab.sh(ns.h2, `ip addr add ${inner.gw}/24 dev br0`);
    await waitFor(async () => (await sendUdp(lab, ns.h2, inner.c1, 9), (await ebtablesCount(lab, ns.h2, 'WEAVE-FASTPATH', GATEWAY_OUT)) > sent), {
      what: 'h2 to drop its gateway frames at the VXLAN port',
      timeoutMs: 10_000,
    });
    expect(await ebtablesCount(lab, ns.h1, 'WEAVE-FASTPATH', GATEWAY_IN)).toBe(taken);

    // Without h2's guard, h1's own drops them on the way in.
    await guard.h2.remove();
    await waitFor(async () => (await sendUdp(lab, ns.h2, inner.c1, 9), (await ebtablesCount(lab, ns.h1, 'WEAVE-FASTPATH', GATEWAY_IN)) > taken), {
      what: 'h1 to drop gateway frames arriving over VXLAN',
      timeoutMs: 10_000,
    });
    expect(await received(ns.c1, inner.gw)).toBe(0);
    await lab.sh(ns.h2, `ip addr del ${inner.gw}/24 dev br0`);
    await guard.h2.guard({ local: under.h2, port: 4789, peers: [under.h1] });
  });

  it('drops VXLAN from hosts that are not peers, and lets them in once they are', async () => {
    // h3 speaks VXLAN to h1 on the network's VNI without being its peer.
    await lab.sh(ns.h3, `ip link add ${wx} type vxlan id 42 local ${under.h3} dstport 4789 && ip addr add ${inner.h3}/24 dev ${wx} && ip link set ${wx} up`);
    await lab.sh(ns.h3, `bridge fdb append 00:00:00:00:00:00 dev ${wx} dst ${under.h1}`);
    await waitFor(async () => (await sendUdp(lab, ns.h3, inner.c1, 9), (await iptablesCount(lab, ns.h1, 'WEAVE-VXLAN', '-j DROP')) > 0), {
      what: 'h1 to drop VXLAN from h3',
      timeoutMs: 10_000,
    });
    expect(await received(ns.c1, inner.h3)).toBe(0);

    await guard.h1.guard({ local: under.h1, port: 4789, peers: [under.h2, under.h3] });
    await waitFor(async () => (await sendUdp(lab, ns.h3, inner.c1, 9), (await received(ns.c1, inner.h3)) > 0), { what: 'c1 to receive from h3 once it is a peer', timeoutMs: 10_000 });
  });

  it('rewrites nothing when in line, and one transaction for a new peer set or port', async () => {
    const commands: string[] = [];
    const g = new LinuxFastPathGuard({ netns: ns.h1, exec: recording(commands) });
    await g.guard({ local: under.h1, port: 4789, peers: [under.h3, under.h2] });
    expect(commands.map(program)).toEqual(['ebtables-save', 'iptables', 'ip6tables']);
    commands.length = 0;
    await g.guard({ local: under.h1, port: 4790, peers: [under.h2] });
    expect(commands.map(program)).toEqual(['ebtables-save', 'iptables', 'iptables-restore']);
    const rules = await lab.sh(ns.h1, 'iptables -S');
    expect(rules.split('\n').filter((l) => l.includes('WEAVE-VXLAN') && l.startsWith('-A'))).toEqual([
      '-A INPUT -p udp -m udp --dport 4790 -j WEAVE-VXLAN',
      `-A WEAVE-VXLAN -s ${under.h2}/32 -j RETURN`,
      '-A WEAVE-VXLAN -j DROP',
    ]);
  });

  it('keeps multicast beyond the link on its host unless the network carries it; link-local multicast always crosses', async () => {
    const [group, mdns, s1] = ['239.1.2.3', '224.0.0.251', '10.254.210.9'];
    const V4_GROUPS = '-d 01:00:5e:00:00:00/ff:ff:ff:80:00:00';
    /** The datagrams to port 9 for `dst` that `where` received (it joined the group). */
    const got = (where: string, dst: string) => iptablesCount(lab, where, 'INPUT', `-d ${dst}/32`);
    const listen = (where: string, dst: string) => lab.sh(where, `ip addr add ${dst}/32 dev eth0 autojoin && iptables -A INPUT -d ${dst}/32 -p udp --dport 9`);
    // c2 (host 2) and s1 (a local port of host 1's bridge) join the group; c2 listens for mDNS too.
    await lab.sh(ns.s1, `ip addr add ${s1}/24 dev eth0`);
    for (const [where, dst] of [[ns.c2, group], [ns.c2, mdns], [ns.s1, group]] as const) await listen(where, dst);
    await lab.sh(ns.c1, 'ip route add 224.0.0.0/4 dev eth0');
    const guardBoth = async (multicast: string[]) => {
      await guard.h1.guard({ local: under.h1, port: 4789, peers: [under.h2], multicast });
      await guard.h2.guard({ local: under.h2, port: 4789, peers: [under.h1], multicast });
    };
    await guardBoth([]);

    await waitFor(async () => (await sendUdp(lab, ns.c1, mdns, 9), (await got(ns.c2, mdns)) > 0), { what: 'mDNS to cross VXLAN', timeoutMs: 10_000 });
    const kept = await ebtablesCount(lab, ns.h1, 'WEAVE-FASTPATH', `${V4_GROUPS} -j DROP`);
    await waitFor(async () => (await sendUdp(lab, ns.c1, group, 9), (await got(ns.s1, group)) > 0 && (await ebtablesCount(lab, ns.h1, 'WEAVE-FASTPATH', `${V4_GROUPS} -j DROP`)) > kept), {
      what: 'the group to reach the local port and be dropped at the VXLAN port',
      timeoutMs: 10_000,
    });
    expect(await got(ns.c2, group)).toBe(0);

    // Host 1 lets it out, host 2 still keeps it off its bridge.
    await guard.h1.guard({ local: under.h1, port: 4789, peers: [under.h2], multicast: [wx] });
    const refused = await ebtablesCount(lab, ns.h2, 'WEAVE-FASTPATH', `${V4_GROUPS} -j DROP`);
    await waitFor(async () => (await sendUdp(lab, ns.c1, group, 9), (await ebtablesCount(lab, ns.h2, 'WEAVE-FASTPATH', `${V4_GROUPS} -j DROP`)) > refused), {
      what: 'h2 to drop the group arriving over VXLAN',
      timeoutMs: 10_000,
    });
    expect(await got(ns.c2, group)).toBe(0);

    await guardBoth([wx]);
    await waitFor(async () => (await sendUdp(lab, ns.c1, group, 9), (await got(ns.c2, group)) > 0), { what: 'the group to cross once both carry it', timeoutMs: 10_000 });
    await guardBoth([]);
  });

  it('removes every rule and chain of its own', async () => {
    await guard.h1.remove();
    await guard.h1.remove();
    expect(await lab.sh(ns.h1, 'iptables -S; ebtables-save')).not.toMatch(/WEAVE-/);
  });
});

/** An Exec that records each program's argv (after nsenter's) and runs it. */
function recording(into: string[]): Exec {
  return (file, args, input) => {
    into.push([file, ...args].join(' '));
    return execFileNoShell(file, args, input);
  };
}

const program = (command: string): string => command.split(' ')[3]!; // nsenter --net=… -- <program>

async function floodEntries(host: string): Promise<string[]> {
  const fdb = JSON.parse(await lab.sh(host, `bridge -j fdb show dev ${wx}`)) as Array<{ mac: string; dst?: string }>;
  return fdb.filter((e) => e.mac === '00:00:00:00:00:00' && e.dst).map((e) => e.dst!);
}
