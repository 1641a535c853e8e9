import type { Peer } from '../src/peers';
import { peerIdOf } from '../src/peer-id';
import { planSleeve, tapName } from '../src/sleeve-plan';

const net = (networkId: string, wireId: number, mtu = 1436) => ({ networkId: networkId.repeat(64), bridge: `wvb${networkId.repeat(12)}`, wireId, gatewayMac: `7a:57:00:00:00:0${wireId}`, mtu });
const peer = (host: string, state: Peer['state'] = 'connected', address = '10.0.0.2'): Peer => ({ host, boot: '0'.repeat(16), address, port: 6784, state, lastSeen: 0, since: 0 });

test('every network gets a TAP named by its wire id, with its gateway MAC kept local', () => {
  const plan = planSleeve([net('b', 2), net('a', 1)], []);
  expect(plan.networks).toEqual([
    { id: 1, tap: 'wvs00000001', localMacs: ['7a:57:00:00:00:01'] },
    { id: 2, tap: 'wvs00000002', localMacs: ['7a:57:00:00:00:02'] },
  ]);
  expect(plan.taps.map((t) => [t.tap, t.bridge, t.mtu])).toEqual([
    ['wvs00000001', `wvb${'a'.repeat(12)}`, 1436],
    ['wvs00000002', `wvb${'b'.repeat(12)}`, 1436],
  ]);
  expect(tapName(0xffffffff)).toBe('wvsffffffff');
  expect(tapName(0xffffffff).length).toBeLessThanOrEqual(15);
});

test('only connected peers are sent to, addressed by ip:port, with ids every host derives alike', () => {
  const plan = planSleeve([], [peer('h3', 'lost', '10.0.0.3'), peer('h2'), peer('h6', 'connected', 'fd00::6')]);
  expect(plan.peers).toEqual([
    { id: peerIdOf('h2'), address: '10.0.0.2:6784' },
    { id: peerIdOf('h6'), address: '[fd00::6]:6784' },
  ]);
  expect(peerIdOf('h2')).toBe(peerIdOf('h2'));
  expect(peerIdOf('h2')).not.toBe(peerIdOf('h3'));
  expect(peerIdOf('h2')).toBeGreaterThan(0n);
});

test('two Docker networks claiming one wire id (overlapping pools, which IPAM refuses) keep a single TAP', () => {
  const plan = planSleeve([net('b', 1), net('a', 1)], []);
  expect(plan.networks).toHaveLength(1);
  expect(plan.taps[0]!.networkId).toBe('a'.repeat(64));
});
