import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytes, count, escapeXml, meshGraph, meshSvg } from '../src/graph';
import type { HostReport, RouterStatus } from '../src/views';

/**
 * Golden test of `weave status --graph`: the picture of a known mesh, byte for byte. After a
 * deliberate change, look at the new picture and accept it with UPDATE_GOLDEN=1.
 */
const GOLDEN = join(__dirname, 'golden', 'mesh.svg');

type Peer = RouterStatus['peers'][number];
const T = '2026-01-01T00:00:00.000Z';
const peer = (host: string, n: number, o: Partial<Peer> = {}): Peer => ({
  host,
  address: `10.254.254.${n}`,
  port: 6784,
  state: 'connected',
  lastSeen: T,
  since: T,
  path: 'sleeve',
  mtu: 1436,
  ...o,
});
const router = (host: string, n: number, peers: Peer[]): RouterStatus => ({ host, address: `10.254.254.${n}`, port: 6784, peers, networks: [], sleeve: {} });
const answered = (host: string, r: RouterStatus | null, problems: string[] = []): HostReport => ({ host, ipam: { pools: [], hosts: [] }, netwire: { networks: [], endpoints: [] }, router: r, problems });

/**
 * host1 sees host2 on the sleeve (both count traffic), host3 lost, host4 on the fast path;
 * host2 agrees about host1 (with another MTU); host3 answers nothing; host4's netwire is down
 * and it knows a host5 nobody asked.
 */
const reports: HostReport[] = [
  answered(
    'host1',
    router('host1', 11, [
      peer('host2', 12, { traffic: { bytesTo: '123456789', framesTo: '83412', bytesFrom: '1024', framesFrom: '12' } }),
      peer('host3', 13, { state: 'lost', path: null, mtu: null }),
      peer('host4', 14, { path: 'fastpath', mtu: 1450 }),
    ]),
  ),
  answered('host2', router('host2', 12, [peer('host1', 11, { mtu: 1400, traffic: { bytesTo: '2048', framesTo: '20' } })])),
  { host: 'host3', ipam: null, netwire: null, router: null, problems: ['ipam of host3 did not answer: no responder for <status> & "more"'] },
  { ...answered('host4', router('host4', 14, [peer('host1', 11, { path: 'fastpath', mtu: 1450 }), peer('host5', 15, { path: null })])), netwire: null, problems: ['netwire of host4 did not answer: timed out'] },
];

test('the model: every host once, one link per pair, its kind from both sides, traffic each way', () => {
  const g = meshGraph(reports);
  expect(g.hosts.map((h) => `${h.host} ${h.state} ${h.address}`)).toEqual([
    'host1 up 10.254.254.11',
    'host2 up 10.254.254.12',
    'host3 unreachable 10.254.254.13',
    'host4 degraded 10.254.254.14',
    'host5 unreachable 10.254.254.15',
  ]);
  expect(g.links).toEqual([
    {
      a: 'host1',
      b: 'host2',
      kind: 'sleeve',
      mtu: [1400, 1436],
      flows: [
        { from: 'host1', to: 'host2', bytes: '123456789', frames: '83412' },
        { from: 'host2', to: 'host1', bytes: '2048', frames: '20' },
      ],
    },
    { a: 'host1', b: 'host3', kind: 'down', mtu: [], flows: [] },
    { a: 'host1', b: 'host4', kind: 'fastpath', mtu: [1450], flows: [] },
    { a: 'host4', b: 'host5', kind: 'down', mtu: [1436], flows: [] },
  ]);
});

test('a link is fast only when both sides say so, and down when either side has lost the other', () => {
  const pair = (p1: Partial<Peer>, p2: Partial<Peer>) => meshGraph([answered('a', router('a', 1, [peer('b', 2, p1)])), answered('b', router('b', 2, [peer('a', 1, p2)]))]).links[0]!.kind;
  expect(pair({ path: 'fastpath' }, { path: 'fastpath' })).toBe('fastpath');
  expect(pair({ path: 'fastpath' }, { path: 'sleeve' })).toBe('sleeve');
  expect(pair({}, { state: 'lost' })).toBe('down');
  expect(pair({ path: null }, {})).toBe('down');
});

test('the picture of the mesh, exactly (golden)', () => {
  const svg = meshSvg(meshGraph(reports));
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(GOLDEN, svg);
  expect(svg).toBe(readFileSync(GOLDEN, 'utf8'));
});

test('a single host without peers is a picture too', () => {
  const svg = meshSvg(meshGraph([answered('solo', null)]));
  expect(svg).toContain('weave mesh: 1 host, 0 links');
  expect(svg).toContain('<circle cx="150" cy="150" r="30"');
});

test('text from the hosts is escaped', () => {
  expect(escapeXml(`<a href="x">&'\u0007`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&#39;\ufffd');
  const svg = meshSvg(meshGraph(reports));
  expect(svg).toContain('no responder for &lt;status&gt; &amp; &quot;more&quot;');
  expect(svg).not.toContain('<status>');
});

test('counters at a glance', () => {
  expect([bytes('0'), bytes('1023'), bytes('1024'), bytes('123456789'), bytes('18446744073709551615')]).toEqual(['0 B', '1023 B', '1.0 KiB', '117.7 MiB', '16384.0 PiB']);
  expect([count('999'), count('83412'), count('2500000')]).toEqual(['999', '83.4k', '2.5M']);
});
