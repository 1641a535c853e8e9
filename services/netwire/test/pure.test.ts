import { NetwireEnv } from '../src/env';
import { bridgeOfTag, bridgeRules, ipv6Counterparts, jumpRules, parseRuleLine } from '../src/firewall';
import { KeyedMutex } from '@weave/sync';
import { bridgeMac, endpointMac, isLocalUnicast } from '../src/mac';
import { wireIdOf } from '../src/wire';
import { chooseMtu, MtuSources } from '../src/mtu';
import { bridgeName, containerVethName, hostVethName, roleOf } from '../src/names';
import { planReconcile } from '../src/reconcile';
import type { LinkInfo } from '../src/kernel';
import type { EndpointRecord, NetworkRecord } from '../src/store';
import { endpointRecord, networkSpec } from './helpers';

const NET = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2';
const EP = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';

describe('names', () => {
  it('derive 14-character names from Docker ids', () => {
    expect(bridgeName(NET)).toBe('wvba1b2c3d4e5f');
    expect(hostVethName(EP)).toBe('wvh0123456789a');
    expect(containerVethName(EP)).toBe('wvc0123456789a');
    for (const n of [bridgeName(NET), hostVethName(EP), containerVethName(EP)]) expect(n.length).toBeLessThanOrEqual(15);
  });
  it('refuse anything that is not a hex id', () => {
    expect(() => bridgeName('../../etc')).toThrow(TypeError);
    expect(() => hostVethName('abc')).toThrow(TypeError);
  });
  it.each([
    ['wvba1b2c3d4e5f', 'bridge'],
    ['wvh0123456789a', 'hostVeth'],
    ['wvc0123456789a', 'containerVeth'],
    ['wvb0123456789', null], // too short
    ['wvb0123456789ab', null], // too long
    ['wvbXYZ3456789a', null],
    ['eth0', null],
    ['docker0', null],
    ['wvx0123456789a', null],
  ])('recognises %s as %s', (name, role) => {
    expect(roleOf(name)).toBe(role);
  });
});

describe('MAC addresses', () => {
  it('derive the bridge (gateway) MAC from the wire id, the same on every host, locally administered unicast', () => {
    expect(bridgeMac(wireIdOf({ ipv4: [{ pool: '10.77.0.0/24', gateway: null }] }))).toBe('7a:57:0a:4d:00:00');
    expect(bridgeMac(0xffffffff)).toBe('7a:57:ff:ff:ff:ff');
    expect(isLocalUnicast(bridgeMac(1))).toBe(true);
    expect(() => bridgeMac(2 ** 32)).toThrow(TypeError);
  });
  it('take the wire id from the first IPv4 pool, which no other network in the mesh can share', () => {
    expect(wireIdOf({ ipv4: [{ pool: '10.77.0.0/24', gateway: null }, { pool: '10.78.0.0/24', gateway: null }] })).toBe(0x0a4d0000);
    expect(wireIdOf({ ipv4: [{ pool: '255.255.255.0/24', gateway: null }] })).toBe(0xffffff00);
    expect(() => wireIdOf({ ipv4: [] })).toThrow(TypeError);
  });
  it('give an endpoint 02:42 + its IPv4 address, as Docker does', () => {
    expect(endpointMac('10.77.0.2/24')).toBe('02:42:0a:4d:00:02');
    expect(endpointMac('192.168.255.254/16')).toBe('02:42:c0:a8:ff:fe');
  });
  it('fall back to a random locally administered unicast MAC without IPv4', () => {
    const mac = endpointMac('fd00::5/64', () => Uint8Array.from([0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa]));
    expect(mac).toBe('fe:ee:dd:cc:bb:aa');
    expect(isLocalUnicast(mac)).toBe(true);
    for (let i = 0; i < 50; i++) expect(isLocalUnicast(endpointMac(null))).toBe(true);
    expect(endpointMac(null)).not.toBe(endpointMac(null));
  });
});

describe('MTU', () => {
  it.each<[MtuSources, number, string]>([
    [{ network: 1400, hostSetting: 1300, underlay: 9000 }, 1400, 'the network option wins'],
    [{ network: null, hostSetting: 1300, underlay: 9000 }, 1300, 'then WEAVE_MTU'],
    [{ network: null, hostSetting: null, underlay: 1500 }, 1436, 'then the underlay less the sleeve overhead'],
    [{ network: null, hostSetting: null, underlay: 9001 }, 8937, 'jumbo underlay'],
    [{ network: null, hostSetting: null, underlay: null }, 1436, 'no default route: 1500 assumed'],
    [{ network: 65000, hostSetting: null, underlay: null }, 9000, 'clamped above'],
    [{ network: null, hostSetting: null, underlay: 600 }, 576, 'clamped below'],
  ])('%j -> %d (%s)', (sources, mtu) => {
    expect(chooseMtu(sources)).toBe(mtu);
  });
  it('WEAVE_MTU is validated at start', () => {
    expect(NetwireEnv.parse({ WEAVE_MTU: '1400' }).WEAVE_MTU).toBe(1400);
    expect(NetwireEnv.parse({ WEAVE_MTU: '' }).WEAVE_MTU).toBeUndefined();
    expect(NetwireEnv.parse({}).WEAVE_MTU).toBeUndefined();
    expect(() => NetwireEnv.parse({ WEAVE_MTU: '100' })).toThrow();
    expect(() => NetwireEnv.parse({ WEAVE_MTU: 'big' })).toThrow();
    expect(() => NetwireEnv.parse({ WEAVE_NETNS: '../x' })).toThrow();
  });
});

describe('firewall rules', () => {
  const lines = (f: Parameters<typeof bridgeRules>[0]) => bridgeRules(f).map((r) => `${r.table} ${r.position} ${r.chain} ${r.spec.join(' ')}`);
  it('accept bridge-local, outbound and return traffic and masquerade the subnet on a normal network', () => {
    expect(lines({ bridge: 'wvb1', internal: false, masquerade: ['10.77.0.0/24'] })).toEqual([
      'filter first WEAVE-ISOLATE -i wvb1 -o wvb1 -m comment --comment weave:wvb1 -j RETURN',
      'filter last WEAVE-FORWARD -i wvb1 -o wvb1 -m comment --comment weave:wvb1 -j ACCEPT',
      'filter last WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment weave:wvb1 -j ACCEPT',
      'filter last WEAVE-FORWARD -o wvb1 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment weave:wvb1 -j ACCEPT',
      'nat last WEAVE-POSTROUTING -s 10.77.0.0/24 ! -o wvb1 -m comment --comment weave:wvb1 -j MASQUERADE',
    ]);
  });
  it('turn queries to the resolvers Docker gave the containers to weave DNS on the gateway', () => {
    expect(lines({ bridge: 'wvb1', internal: false, masquerade: [], dns: { gateway: '10.77.0.1', intercepted: ['10.255.0.53'] } }).filter((l) => l.includes('WEAVE-DNS'))).toEqual([
      'nat last WEAVE-DNS -d 10.255.0.53/32 -i wvb1 -p udp -m udp --dport 53 -m comment --comment weave:wvb1 -j DNAT --to-destination 10.77.0.1:53',
      'nat last WEAVE-DNS -d 10.255.0.53/32 -i wvb1 -p tcp -m tcp --dport 53 -m comment --comment weave:wvb1 -j DNAT --to-destination 10.77.0.1:53',
    ]);
  });
  it('isolate an internal network with drops at the top of the chain', () => {
    expect(lines({ bridge: 'wvb2', internal: true, masquerade: [] })).toEqual([
      'filter first WEAVE-FORWARD -i wvb2 ! -o wvb2 -m comment --comment weave:wvb2 -j DROP',
      'filter first WEAVE-FORWARD ! -i wvb2 -o wvb2 -m comment --comment weave:wvb2 -j DROP',
      'filter first WEAVE-ISOLATE -i wvb2 -o wvb2 -m comment --comment weave:wvb2 -j RETURN',
      'filter last WEAVE-FORWARD -i wvb2 -o wvb2 -m comment --comment weave:wvb2 -j ACCEPT',
    ]);
  });
  it('send traffic between two weave bridges through WEAVE-ISOLATE, which drops all but a bridge\'s own', () => {
    expect(jumpRules.map((r) => `${r.table} ${r.position} ${r.chain} ${r.spec.join(' ')}`)).toEqual([
      'filter first FORWARD -j WEAVE-FORWARD',
      'nat first POSTROUTING -j WEAVE-POSTROUTING',
      'filter first WEAVE-FORWARD -i wvb+ -o wvb+ -j WEAVE-ISOLATE',
      'filter last WEAVE-ISOLATE -j DROP',
      // published ports (see ports.test.ts)
      'nat first PREROUTING ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j WEAVE-PORTS',
      'nat first OUTPUT -m addrtype --dst-type LOCAL -j WEAVE-PORTS',
      'filter first WEAVE-ISOLATE -m conntrack --ctstate DNAT -j RETURN',
      'raw first PREROUTING -j WEAVE-PREROUTING',
      'raw last WEAVE-PREROUTING -d 127.0.0.0/8 -i wvb+ -j DROP',
      // weave DNS (see dns.test.ts)
      'nat first PREROUTING -i wvb+ -j WEAVE-DNS',
    ]);
  });
  it('keep IPv6 apart the same way in ip6tables: the filter rules, without NAT or anything naming an IPv4 address', () => {
    const text = (rules: ReturnType<typeof ipv6Counterparts>) => rules.map((r) => `${r.table} ${r.position} ${r.chain} ${r.spec.join(' ')}`);
    expect(text(ipv6Counterparts(jumpRules))).toEqual([
      'filter first FORWARD -j WEAVE-FORWARD',
      'filter first WEAVE-FORWARD -i wvb+ -o wvb+ -j WEAVE-ISOLATE',
      'filter last WEAVE-ISOLATE -j DROP',
      'filter first WEAVE-ISOLATE -m conntrack --ctstate DNAT -j RETURN',
    ]);
    const normal = { bridge: 'wvb1', internal: false, masquerade: ['10.77.0.0/24'], dns: { gateway: '10.77.0.1', intercepted: ['10.255.0.53'] } };
    expect(text(ipv6Counterparts(bridgeRules(normal)))).toEqual(lines(normal).filter((l) => l.startsWith('filter ')));
    expect(text(ipv6Counterparts(bridgeRules({ bridge: 'wvb2', internal: true, masquerade: [] })))).toEqual(lines({ bridge: 'wvb2', internal: true, masquerade: [] }));
  });
  it('reads back iptables -S lines, quoted comments included, and finds the tag', () => {
    const r = parseRuleLine('-A WEAVE-FORWARD -i wvb1 -o wvb1 -m comment --comment "weave:wvb1" -j ACCEPT');
    expect(r).toEqual({ chain: 'WEAVE-FORWARD', spec: ['-i', 'wvb1', '-o', 'wvb1', '-m', 'comment', '--comment', 'weave:wvb1', '-j', 'ACCEPT'] });
    expect(bridgeOfTag(r!.spec)).toBe('wvb1');
    expect(parseRuleLine('-N WEAVE-FORWARD')).toBeNull();
    expect(parseRuleLine('-P FORWARD DROP')).toBeNull();
    expect(bridgeOfTag(parseRuleLine('-A FORWARD -m comment --comment "other thing" -j ACCEPT')!.spec)).toBeNull();
  });
});

describe('reconcile plan', () => {
  const link = (name: string, kind: string | null, master: string | null = null, owner: string | null = 'h1'): LinkInfo => ({ name, kind, master, mtu: 1450, mac: '', up: true, owner });
  const net = (networkId: string): NetworkRecord => ({ spec: networkSpec({ networkId }), bridge: bridgeName(networkId), mtu: 1450 });
  const ep = (networkId: string, endpointId: string): EndpointRecord => endpointRecord(networkId, endpointId);
  const n1 = 'a'.repeat(64);
  const n2 = 'b'.repeat(64);
  const gone = 'c'.repeat(64);
  const e1 = '1'.repeat(64);
  const e2 = '2'.repeat(64);
  const eGone = '3'.repeat(64);
  const eKeep = '4'.repeat(64);
  const orphanEp = '5'.repeat(64);

  const plan = planReconcile({
    owner: 'h1',
    links: [
      link('lo', null),
      link('eth0', null),
      link('docker0', 'bridge'),
      link(bridgeName(n1), 'bridge'),
      link(hostVethName(e1), 'veth', bridgeName(n1)),
      link(hostVethName(e2), 'veth', null), // its bridge n2 is missing
      link(bridgeName(gone), 'bridge'),
      link(hostVethName(orphanEp), 'veth', bridgeName(gone)),
      link(containerVethName(orphanEp), 'veth'),
      link('wvbabcdefabcde', 'veth'), // our name but not our kind: not ours to touch
      link('wvb77777777777', 'bridge', null, 'another-host'), // another weave stack's, on this machine
      link('wvh77777777777', 'veth', 'wvb77777777777', 'another-host'),
      link('wvh88888888888', 'veth', null, null), // not tagged by any weave host
    ],
    networks: [net(n1), net(n2)],
    endpoints: [ep(n1, e1), ep(n2, e2), ep(gone, eGone), ep(n1, eKeep)],
    firewallBridges: [bridgeName(n1), bridgeName(gone), 'wvb99999999999', 'wvb77777777777'],
    portOwners: [],
  });

  it('removes only our leftovers, veths before bridges', () => {
    expect(plan.removeLinks).toEqual([hostVethName(orphanEp), containerVethName(orphanEp), bridgeName(gone)]);
  });
  it('removes rules of bridges no network owns', () => {
    expect(plan.removeFirewall).toEqual([bridgeName(gone), 'wvb99999999999']);
  });
  it('restores networks whose bridge is missing and re-ensures the others', () => {
    expect(plan.restoreNetworks.map((n) => n.spec.networkId)).toEqual([n2]);
    expect(plan.ensureNetworks.map((n) => n.spec.networkId)).toEqual([n1]);
  });
  it('puts endpoints back on their bridge', () => {
    expect(plan.reattach).toEqual([{ hostVeth: hostVethName(e2), bridge: bridgeName(n2), endpointId: e2 }]);
  });
  it('forgets endpoints only when both their veth and their network are gone', () => {
    expect(plan.forgetEndpoints).toEqual([eGone]);
  });
});

describe('KeyedMutex', () => {
  const tick = () => new Promise((r) => setTimeout(r, 2));
  it('runs one key at a time and different keys together', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const op = (key: string, name: string) =>
      m.run(key, async () => {
        log.push(`start ${name}`);
        await tick();
        log.push(`end ${name}`);
      });
    await Promise.all([op('a', 'a1'), op('a', 'a2'), op('b', 'b1')]);
    expect(log.indexOf('end a1')).toBeLessThan(log.indexOf('start a2'));
    expect(log.indexOf('start b1')).toBeLessThan(log.indexOf('end a1'));
  });
  it('keeps going after a failure', async () => {
    const m = new KeyedMutex();
    await expect(m.run('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(m.run('a', async () => 7)).resolves.toBe(7);
  });
  it('exclusive waits for everything in flight and holds off what comes after', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const slow = (name: string) => async () => {
      log.push(`start ${name}`);
      await tick();
      log.push(`end ${name}`);
    };
    const all = [m.run('a', slow('a')), m.run('b', slow('b')), m.exclusive(slow('x')), m.run('a', slow('a2'))];
    await Promise.all(all);
    expect(log.indexOf('start x')).toBeGreaterThan(Math.max(log.indexOf('end a'), log.indexOf('end b')));
    expect(log.indexOf('start a2')).toBeGreaterThan(log.indexOf('end x'));
  });
});
