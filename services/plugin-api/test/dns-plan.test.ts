import { DnsRecord, dnsKey } from '@weave/contracts';
import type { DnsAttachment } from '../src/dns/docker-attachments';
import { DnsPlan, planDns } from '../src/dns/plan';

const HOST = 'h1';
const EPOCH = 3;
const BY = { host: HOST, epoch: EPOCH };
const id = (c: string): string => c.repeat(64);
const [C1, C2, E1, E2, E3] = [id('1'), id('2'), id('a'), id('b'), id('c')];

const web: DnsAttachment = { containerId: C1, containerName: 'web', network: 'weave:foo', endpointId: E1, aliases: ['111111111111'], addresses: ['10.32.0.5'] };
const rec = (a: DnsAttachment, names: string[], host = HOST): DnsRecord => ({ host, containerId: a.containerId, endpointId: a.endpointId, network: a.network, names, addresses: a.addresses, epoch: EPOCH });
const webRecord = rec(web, ['web', '111111111111']);
const ours = (r: DnsRecord): [string, DnsRecord] => [dnsKey(r.host, r.endpointId), r];

/** The plan, reduced to what a reader checks: keys put with their names, keys deleted, names skipped. */
const summary = (p: DnsPlan) => ({
  put: p.put.map((x) => [x.key, x.record.names, x.record.addresses]),
  delete: p.delete.map((x) => x.key),
  skipped: p.skipped.map((s) => s.name ?? `<${s.reason}>`),
});

const cases: Array<{ name: string; docker: DnsAttachment[]; bucket: Array<[string, DnsRecord]>; want: ReturnType<typeof summary> }> = [
  {
    name: 'a new container is put under its name and its short id',
    docker: [web],
    bucket: [],
    want: { put: [[dnsKey(HOST, E1), ['web', '111111111111'], ['10.32.0.5']]], delete: [], skipped: [] },
  },
  { name: 'an unchanged container is left alone', docker: [web], bucket: [ours(webRecord)], want: { put: [], delete: [], skipped: [] } },
  {
    name: 'an alias added is a put of the whole record',
    docker: [{ ...web, aliases: ['111111111111', 'api'] }],
    bucket: [ours(webRecord)],
    want: { put: [[dnsKey(HOST, E1), ['web', '111111111111', 'api'], ['10.32.0.5']]], delete: [], skipped: [] },
  },
  {
    name: 'a record of an older epoch (written before a reclaim) is written again under ours',
    docker: [web],
    bucket: [ours({ ...webRecord, epoch: EPOCH - 1 })],
    want: { put: [[dnsKey(HOST, E1), ['web', '111111111111'], ['10.32.0.5']]], delete: [], skipped: [] },
  },
  {
    name: 'so is one written before records carried an epoch',
    docker: [web],
    bucket: [ours({ ...webRecord, epoch: undefined })],
    want: { put: [[dnsKey(HOST, E1), ['web', '111111111111'], ['10.32.0.5']]], delete: [], skipped: [] },
  },
  { name: 'a stopped container (no longer listed) is deleted', docker: [], bucket: [ours(webRecord)], want: { put: [], delete: [dnsKey(HOST, E1)], skipped: [] } },
  {
    name: 'a container disconnected from one network keeps its record on the other',
    docker: [{ ...web, network: 'weave:bar', endpointId: E2 }],
    bucket: [ours(webRecord), ours(rec({ ...web, network: 'weave:bar', endpointId: E2 }, ['web', '111111111111']))],
    want: { put: [], delete: [dnsKey(HOST, E1)], skipped: [] },
  },
  {
    name: 'a renamed container is put under its new name',
    docker: [{ ...web, containerName: 'frontend' }],
    bucket: [ours(webRecord)],
    want: { put: [[dnsKey(HOST, E1), ['frontend', '111111111111'], ['10.32.0.5']]], delete: [], skipped: [] },
  },
  {
    name: 'names are lowercased and kept once',
    docker: [{ ...web, containerName: 'My_App.1', aliases: ['my_app.1', 'API'] }],
    bucket: [],
    want: { put: [[dnsKey(HOST, E1), ['my_app.1', 'api'], ['10.32.0.5']]], delete: [], skipped: [] },
  },
  {
    name: 'an invalid alias is skipped, the valid names still published',
    docker: [{ ...web, aliases: ['bad name!', 'ok'] }],
    bucket: [],
    want: { put: [[dnsKey(HOST, E1), ['web', 'ok'], ['10.32.0.5']]], delete: [], skipped: ['bad name!'] },
  },
  {
    name: 'a container with no valid name gets no record, and loses the one it had',
    docker: [{ ...web, containerName: '-x', aliases: ['a..b', `${'x'.repeat(64)}`] }],
    bucket: [ours(webRecord)],
    want: { put: [], delete: [dnsKey(HOST, E1)], skipped: ['-x', 'a..b', 'x'.repeat(64), '<no valid DNS name>'] },
  },
  {
    name: "other hosts' keys are never touched",
    docker: [],
    bucket: [ours(rec(web, ['web'], 'h2')), ours(rec({ ...web, endpointId: E3 }, ['db'], 'h10'))],
    want: { put: [], delete: [], skipped: [] },
  },
  {
    name: 'an IPv6 address is published beside the IPv4 one',
    docker: [{ ...web, addresses: ['10.32.0.5', 'fd00:dead:beef::2'] }],
    bucket: [ours(webRecord)],
    want: { put: [[dnsKey(HOST, E1), ['web', '111111111111'], ['10.32.0.5', 'fd00:dead:beef::2']]], delete: [], skipped: [] },
  },
  {
    name: 'an endpoint without a valid address gets no record',
    docker: [{ ...web, addresses: ['10.32.0.5/24'] }],
    bucket: [],
    want: { put: [], delete: [], skipped: ['<no IP address>'] },
  },
  {
    name: 'two containers, one new and one gone',
    docker: [{ ...web, containerId: C2, containerName: 'db', endpointId: E2, aliases: [] }],
    bucket: [ours(webRecord)],
    want: { put: [[dnsKey(HOST, E2), ['db'], ['10.32.0.5']]], delete: [dnsKey(HOST, E1)], skipped: [] },
  },
];

test.each(cases)('$name', ({ docker, bucket, want }) => {
  expect(summary(planDns(BY, docker, new Map(bucket)))).toEqual(want);
});

test('a put carries the record the key held before', () => {
  const [put] = planDns(BY, [{ ...web, containerName: 'frontend' }], new Map([ours(webRecord)])).put;
  expect(put?.previous).toEqual(webRecord);
  expect(put?.record).toEqual({ ...webRecord, names: ['frontend', '111111111111'] });
});

test('a host whose name prefixes another host\'s keys touches only its own', () => {
  // h1's prefix is `h1.`: h10's keys do not start with it.
  const plan = planDns(BY, [], new Map([ours(rec(web, ['web'], 'h10')), ours(webRecord)]));
  expect(plan.delete.map((d) => d.key)).toEqual([dnsKey('h1', E1)]);
});
