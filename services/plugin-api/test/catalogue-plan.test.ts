import type { CatalogueEntry } from '@weave/contracts';
import { ActiveEntry, LocalNetwork, planCatalogue } from '../src/catalogue/plan';

const now = new Date('2026-11-29T10:00:00Z');
const local = (name: string, o: Partial<LocalNetwork> = {}): LocalNetwork => ({
  name,
  created: '2026-11-29T09:00:00Z',
  subnets: [{ subnet: '10.40.0.0/24', ipRange: null, gateway: '10.40.0.1' }],
  ipv6: false,
  internal: false,
  options: {},
  labels: {},
  containers: 0,
  replicaOf: null,
  ...o,
});
const active = (name: string, o: Partial<ActiveEntry> = {}): ActiveEntry => ({
  state: 'active',
  name,
  subnets: [{ subnet: '10.40.0.0/24', ipRange: null, gateway: '10.40.0.1' }],
  ipv6: false,
  internal: false,
  options: {},
  labels: {},
  createdBy: 'h2',
  createdAt: '2026-11-29T08:00:00Z',
  ...o,
});
const removed = (name: string, removedAt = '2026-11-29T09:30:00Z'): CatalogueEntry => ({ state: 'removed', name, removedBy: 'h2', removedAt });
const plan = (l: LocalNetwork[], c: CatalogueEntry[]) => planCatalogue('h1', l, new Map(c.map((e) => [e.name, e])), now);

test('a network only here is published as this host\'s', () => {
  expect(plan([local('weave:a')], [])).toEqual([{ kind: 'publish', entry: { ...active('weave:a'), createdBy: 'h1', createdAt: now.toISOString() }, local: local('weave:a') }]);
});

test('a network only in the catalogue is created here', () => {
  expect(plan([], [active('weave:b')])).toEqual([{ kind: 'createLocal', entry: active('weave:b') }]);
});

test('agreement needs nothing, and a gateway one side does not know is no disagreement', () => {
  expect(plan([local('weave:a', { subnets: [{ subnet: '10.40.0.0/24', ipRange: null, gateway: null }] })], [active('weave:a')])).toEqual([]);
});

test.each([
  ['another subnet', { subnets: [{ subnet: '10.41.0.0/24', ipRange: null, gateway: null }] }, /10.41.0.0\/24, the mesh as 10.40.0.0\/24/],
  ['internal here only', { internal: true }, /\(internal\)/],
])('a disagreement (%s) is reported, never fixed by force', (_n, o, reason) => {
  const [a] = plan([local('weave:a', o)], [active('weave:a')]);
  expect(a).toEqual({ kind: 'conflict', name: 'weave:a', reason: expect.stringMatching(reason) });
});

test('a removed network goes, unless containers still use it here', () => {
  expect(plan([local('weave:c')], [removed('weave:c')])).toEqual([{ kind: 'removeLocal', entry: removed('weave:c') }]);
  expect(plan([local('weave:c', { containers: 2 })], [removed('weave:c')])).toEqual([
    { kind: 'conflict', name: 'weave:c', reason: expect.stringMatching(/2 container\(s\) still use it/) },
  ]);
});

test('a network made here after the name was removed is a new network: published again', () => {
  const [a] = plan([local('weave:d', { created: '2026-11-29T09:45:00Z' })], [removed('weave:d', '2026-11-29T09:30:00Z')]);
  expect(a).toMatchObject({ kind: 'publish', entry: { name: 'weave:d', createdBy: 'h1' } });
});

test('a copy made from an older entry is removed with its name, however recent its creation here', () => {
  const copy = local('weave:f', { created: '2026-11-29T09:45:00Z', replicaOf: '2026-11-29T08:00:00Z' });
  expect(plan([copy], [removed('weave:f', '2026-11-29T09:30:00Z')])).toEqual([{ kind: 'removeLocal', entry: removed('weave:f', '2026-11-29T09:30:00Z') }]);
});

test('a published entry leaves the copy label out', () => {
  const [a] = plan([local('weave:g', { labels: { team: 'x', 'weave.catalogue.replica-of': '2026-11-29T08:00:00Z' }, replicaOf: '2026-11-29T08:00:00Z' })], []);
  expect(a).toMatchObject({ kind: 'publish', entry: { labels: { team: 'x' } } });
});

test('tombstones of networks that are gone everywhere need nothing', () => {
  expect(plan([], [removed('weave:e')])).toEqual([]);
});
