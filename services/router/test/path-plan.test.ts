import type { Peer } from '../src/peers';
import { peerIdOf } from '../src/peer-id';
import { planDataPath, tapName, vniOf, vxlanName } from '../src/path-plan';

const net = (networkId: string, wireId: number, subnet = '10.32.0.0/24') => ({
  networkId: networkId.repeat(64),
  bridge: `wvb${networkId.repeat(12)}`,
  wireId,
  gatewayMac: `7a:57:00:00:00:0${wireId}`,
  mtu: 1436,
  subnets: [subnet],
});
const peer = (host: string, state: Peer['state'] = 'connected', address = '10.0.0.2'): Peer => ({ host, boot: '0'.repeat(16), address, port: 6784, state, lastSeen: 0, since: 0 });

test('every network gets a TAP named by its wire id, with its gateway MAC kept local', () => {
  const plan = planDataPath([net('b', 2), net('a', 1)], []);
  expect(plan.networks).toEqual([
    { id: 1, tap: 'wvs00000001', localMacs: ['7a:57:00:00:00:01'], multicast: false },
    { id: 2, tap: 'wvs00000002', localMacs: ['7a:57:00:00:00:02'], multicast: false },
  ]);
  expect(plan.taps.map((t) => [t.tap, t.bridge, t.mtu])).toEqual([
    ['wvs00000001', `wvb${'a'.repeat(12)}`, 1436],
    ['wvs00000002', `wvb${'b'.repeat(12)}`, 1436],
  ]);
  expect(tapName(0xffffffff)).toBe('wvsffffffff');
  expect(vxlanName(0xffffffff)).toBe('wvxffffffff');
  expect(tapName(0xffffffff).length).toBeLessThanOrEqual(15);
});

test('only connected peers are sent to, addressed by ip:port, with ids every host derives alike', () => {
  const plan = planDataPath([], [peer('h3', 'lost', '10.0.0.3'), peer('h2'), peer('h6', 'connected', 'fd00::6')]);
  expect(plan.peers).toEqual([
    { id: peerIdOf('h2'), address: '10.0.0.2:6784' },
    { id: peerIdOf('h6'), address: '[fd00::6]:6784' },
  ]);
  expect(peerIdOf('h2')).toBe(peerIdOf('h2'));
  expect(peerIdOf('h2')).not.toBe(peerIdOf('h3'));
  expect(peerIdOf('h2')).toBeGreaterThan(0n);
});

test('two Docker networks claiming one wire id (overlapping pools, which IPAM refuses) keep a single TAP', () => {
  const plan = planDataPath([net('b', 1), net('a', 1)], []);
  expect(plan.networks).toHaveLength(1);
  expect(plan.taps[0]!.networkId).toBe('a'.repeat(64));
});

test('a VNI is the upper 24 bits of the wire id for pools of /24 or wider, none for narrower ones', () => {
  const base = (0x0a << 24) | (0x28 << 16) | (0x01 << 8); // 10.40.1.0
  expect(vniOf({ wireId: base >>> 0, subnets: ['10.40.1.0/24'] })).toBe(0x0a2801);
  expect(vniOf({ wireId: 0x0a200000, subnets: ['fd00::/64', '10.32.0.0/12'] })).toBe(0x0a2000);
  expect(vniOf({ wireId: (base | 0x80) >>> 0, subnets: ['10.40.1.128/25'] })).toBeNull();
  expect(vniOf({ wireId: 0, subnets: [] })).toBeNull();
});

test('fast peers get a network over its VXLAN device and the sleeve sends it to the others only', () => {
  const peers = [peer('h2', 'connected', '10.0.0.2'), peer('h3', 'connected', '10.0.0.3'), peer('h4', 'lost', '10.0.0.4')];
  const narrow = { ...net('c', 0x0a280180, '10.40.1.128/25') };
  const plan = planDataPath([net('a', 0x0a200000, '10.32.0.0/24'), narrow], peers, new Set(['h2', 'h4']));
  expect(plan.vxlans).toEqual([{ networkId: 'a'.repeat(64), name: 'wvx0a200000', vni: 0x0a2000, bridge: `wvb${'a'.repeat(12)}`, mtu: 1436, peers: ['10.0.0.2'], multicast: false }]);
  expect(plan.networks.map((n) => [n.tap, n.sendTo])).toEqual([
    ['wvs0a200000', [peerIdOf('h3')]],
    ['wvs0a280180', undefined], // no VNI: the sleeve carries it to every peer
  ]);
  // The sleeve still hears every connected peer, fast or not.
  expect(plan.peers.map((p) => p.id)).toEqual([peerIdOf('h2'), peerIdOf('h3')]);
  // With no fast peer nothing is limited, and the VXLAN devices stay with no one to flood to.
  const slow = planDataPath([net('a', 0x0a200000)], peers);
  expect(slow.networks[0]!.sendTo).toBeUndefined();
  expect(slow.vxlans[0]!.peers).toEqual([]);
});

test('each peer carries the MTU of its path, when there is a usable one', () => {
  const plan = planDataPath([], [peer('h2', 'connected', '10.0.0.2'), peer('h3', 'connected', '10.0.0.3'), peer('h4', 'connected', '10.0.0.4')], new Set(), new Set(), new Map([['h2', 1336], ['h3', 400]]));
  expect(plan.peers.map((p) => p.mtu)).toEqual([1336, undefined, undefined]);
});

test('multicast beyond the link crosses, on both paths, only the networks that ask for it', () => {
  const plan = planDataPath([{ ...net('a', 0x0a200000), multicast: true }, net('b', 0x0a210000, '10.33.0.0/24'), { ...net('c', 0x0a280180, '10.40.1.128/25'), multicast: true }], [peer('h2')]);
  expect(plan.networks.map((n) => [n.tap, n.multicast])).toEqual([
    ['wvs0a200000', true],
    ['wvs0a210000', false], // off by default, and for a netwire that predates the option
    ['wvs0a280180', true],
  ]);
  expect(plan.vxlans.map((v) => [v.name, v.multicast])).toEqual([
    ['wvx0a200000', true],
    ['wvx0a210000', false],
  ]);
});
