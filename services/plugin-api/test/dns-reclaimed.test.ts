import type { Versioned } from '@weave/bus';
import { DnsRecord, dnsKey, HostRecord } from '@weave/contracts';
import { planReclaimedRemovals, reclaimsIn } from '../src/dns/reclaimed';
import { liveHost, reclaimedHost } from './ipam-host-records';

const id = (c: string): string => c.repeat(64);
const NOW = new Date('2025-01-01T12:00:00Z');

const live = (epoch: number): HostRecord => liveHost(epoch, NOW);
/** Reclaimed by h2 at `epoch`, `sinceMs` ago. */
const reclaimed = (epoch: number, sinceMs = 1000): HostRecord => reclaimedHost(epoch, 'h2', new Date(NOW.getTime() - sinceMs));
const rec = (host: string, epoch: number | undefined, endpoint = 'a'): DnsRecord => ({
  host,
  containerId: id('1'),
  endpointId: id(endpoint),
  network: 'weave:foo',
  names: ['web'],
  addresses: ['10.32.0.5'],
  ...(epoch === undefined ? {} : { epoch }),
});
const row = (r: DnsRecord, revision = 7): [string, Versioned<DnsRecord>] => [dnsKey(r.host, r.endpointId), { value: r, revision }];

const cases: Array<{ name: string; me: string; hosts: Array<[string, HostRecord]>; records: Array<[string, Versioned<DnsRecord>]>; removed: string[] }> = [
  { name: "a live host's records stay", me: 'h2', hosts: [['lost', live(2)]], records: [row(rec('lost', 2))], removed: [] },
  { name: 'the reclaimer removes the records of the epoch it reclaimed', me: 'h2', hosts: [['lost', reclaimed(3)]], records: [row(rec('lost', 2))], removed: [dnsKey('lost', id('a'))] },
  { name: 'and of any epoch before it', me: 'h2', hosts: [['lost', reclaimed(3)]], records: [row(rec('lost', 1))], removed: [dnsKey('lost', id('a'))] },
  { name: 'and those written before records carried an epoch', me: 'h2', hosts: [['lost', reclaimed(3)]], records: [row(rec('lost', undefined))], removed: [dnsKey('lost', id('a'))] },
  {
    name: 'records the host wrote back under the reclaim\'s epoch stay, though this view still has it reclaimed',
    me: 'h2',
    hosts: [['lost', reclaimed(3)]],
    records: [row(rec('lost', 3, 'a')), row(rec('lost', 2, 'b'))],
    removed: [dnsKey('lost', id('b'))],
  },
  { name: 'a host back and live again is left to rewrite its own', me: 'h2', hosts: [['lost', live(3)]], records: [row(rec('lost', 2))], removed: [] },
  { name: 'the host itself, fenced, removes its own', me: 'lost', hosts: [['lost', reclaimed(3)]], records: [row(rec('lost', 2))], removed: [dnsKey('lost', id('a'))] },
  { name: 'another host waits while the reclaimer should be at it', me: 'h3', hosts: [['lost', reclaimed(3, 59_000)]], records: [row(rec('lost', 2))], removed: [] },
  { name: 'and removes them once that is long past', me: 'h3', hosts: [['lost', reclaimed(3, 60_000)]], records: [row(rec('lost', 2))], removed: [dnsKey('lost', id('a'))] },
  { name: 'a host ipam does not know is left alone', me: 'h2', hosts: [], records: [row(rec('lost', 2))], removed: [] },
  {
    name: "a record under another host's key is not attributed to the reclaimed one",
    me: 'h2',
    hosts: [['lost', reclaimed(3)]],
    records: [[dnsKey('h4', id('a')), { value: rec('lost', 2), revision: 7 }]],
    removed: [],
  },
  {
    name: "only the reclaimed host's records go, not those of a host whose name it prefixes",
    me: 'h2',
    hosts: [['h1', reclaimed(3)], ['h10', live(1)]],
    records: [row(rec('h1', 2)), row(rec('h10', 1))],
    removed: [dnsKey('h1', id('a'))],
  },
];

test.each(cases)('$name', ({ me, hosts, records, removed }) => {
  const plan = planReclaimedRemovals({ me, now: NOW, othersAfterMs: 60_000 }, new Map(hosts), new Map(records));
  expect(plan.map((r) => r.key)).toEqual(removed);
});

test('a removal is by the revision read, and says which reclaim it follows', () => {
  const [r] = planReclaimedRemovals({ me: 'h2', now: NOW, othersAfterMs: 60_000 }, new Map([['lost', reclaimed(3)]]), new Map([row(rec('lost', 2), 42)]));
  expect(r).toEqual({ key: dnsKey('lost', id('a')), record: rec('lost', 2), revision: 42, epoch: 3, reclaimedBy: 'h2' });
});

test('reclaims are told apart by host and epoch, renewals not at all', () => {
  expect(reclaimsIn(new Map([['a', live(1)], ['b', reclaimed(2)], ['c', reclaimed(5)]]))).toEqual(new Set(['b@2', 'c@5']));
  expect(reclaimsIn(new Map([['a', liveHost(1, new Date(NOW.getTime() + 1000))]]))).toEqual(new Set());
});
