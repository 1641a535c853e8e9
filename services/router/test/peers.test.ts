import type { Presence } from '@weave/contracts';
import { PeerTable } from '../src/peers';

const hb = (host: string, o: Partial<Presence> = {}): Presence => ({ host, boot: '0123456789abcdef', address: '10.254.254.2', port: 6784, leaving: false, ...o });
const kinds = (cs: ReturnType<PeerTable['tick']>) => cs.map((c) => (c.kind === 'connected' ? `+${c.peer.host}` : `-${c.host}:${c.reason}`));

test('a new peer connects once; heartbeats keep it; silence loses it; it comes back', () => {
  const t = new PeerTable('h1', 3000);
  expect(kinds(t.heard(hb('h2'), 0))).toEqual(['+h2']);
  expect(kinds(t.heard(hb('h2'), 1000))).toEqual([]);
  expect(kinds(t.tick(3999))).toEqual([]);
  expect(kinds(t.tick(4001))).toEqual(['-h2:timeout']);
  expect(kinds(t.tick(9000))).toEqual([]);
  expect(t.list()[0]).toMatchObject({ host: 'h2', state: 'lost', since: 4001 });
  expect(kinds(t.heard(hb('h2'), 9500))).toEqual(['+h2']);
});

test('a peer that says it leaves is lost at once; a stale goodbye from an old boot is ignored', () => {
  const t = new PeerTable('h1', 3000);
  t.heard(hb('h2'), 0);
  expect(kinds(t.heard(hb('h2', { leaving: true, boot: 'ffffffffffffffff' }), 10))).toEqual([]);
  expect(kinds(t.heard(hb('h2', { leaving: true }), 20))).toEqual(['-h2:left']);
  expect(kinds(t.heard(hb('h2', { leaving: true }), 30))).toEqual([]);
});

test('a new boot id means the peer restarted between heartbeats', () => {
  const t = new PeerTable('h1', 3000);
  t.heard(hb('h2'), 0);
  expect(kinds(t.heard(hb('h2', { boot: 'aaaaaaaaaaaaaaaa', address: '10.254.254.9' }), 500))).toEqual(['-h2:restarted', '+h2']);
  expect(t.list()[0]).toMatchObject({ address: '10.254.254.9', state: 'connected' });
});

test('its own presence is not a peer', () => {
  const t = new PeerTable('h1', 3000);
  expect(t.heard(hb('h1'), 0)).toEqual([]);
  expect(t.list()).toEqual([]);
});
