import { DockerPoolView } from '@weave/contracts';
import { ConflictError } from '@weave/errors';
import { parseCidr } from '@weave/netaddr';
import { DockerContext, heldVerdict, keptFor, networksOverlapping, networksUsing } from '../src/core/docker-users';
import { decideJoin, NewPool, newPoolRecord, PoolRecord } from '../src/core/records';

/** Who a pool held here belongs to, from Docker's list of this host's networks: every case a row. */
const c = (s: string) => parseCidr(s);
const FOO = { id: 'f'.repeat(64), name: 'weave:foo', subnets: ['10.99.0.0/24'] };
const BAR = { id: 'b'.repeat(64), name: 'weave:bar', subnets: ['10.98.0.0/16', 'fd98::/64'] };
const OLDER_THAN = '2026-11-29T12:00:00.000Z';
const view = (...networks: DockerPoolView['networks']): DockerPoolView => DockerPoolView.parse({ networks, olderThan: OLDER_THAN });
const ctx = (v: DockerPoolView, unknownAge = '2026-11-29T11:00:00.000Z'): DockerContext => ({ view: v, unknownAge: new Date(unknownAge) });

const spec = (pool: string, subPool: string | null = null) => ({ pool: c(pool), subPool: subPool === null ? null : c(subPool) });
const n = (host: string, s = spec('10.99.0.0/24'), at = '2026-11-29T12:05:00.000Z'): NewPool => ({ spec: s, poolId: 'weave:10.99.0.0/24', host, blockSize: 64, gen: 'g1', at });
/** h1's reference to 10.99.0.0/24, taken at `since` (or without a time, as records written before it had one). */
const held = (since: string | null, subPool: string | null = null, holders: Record<string, number> = { h1: 1 }): PoolRecord => {
  const r = newPoolRecord({ ...n('h1', spec('10.99.0.0/24', subPool)), at: since ?? undefined });
  return { ...r, holders, ...(since === null ? {} : { since: Object.fromEntries(Object.keys(holders).map((h) => [h, since])) }) };
};

describe("Docker's networks using a pool", () => {
  it('match by exact subnet; overlapping ones are named in refusals', () => {
    const v = view(FOO, BAR);
    expect(networksUsing(v, c('10.99.0.0/24'))).toEqual([{ id: FOO.id, name: 'weave:foo' }]);
    expect(networksUsing(v, c('10.99.0.0/25'))).toEqual([]);
    expect(networksUsing(v, c('fd98::/64'))).toEqual([{ id: BAR.id, name: 'weave:bar' }]);
    expect(networksOverlapping(v, c('10.98.7.0/24'))).toEqual([{ id: BAR.id, name: 'weave:bar' }]);
    expect(networksOverlapping(v, c('10.97.0.0/24'))).toEqual([]);
  });
});

describe('a RequestPool for a subnet this host holds', () => {
  const s = spec('10.99.0.0/24');
  it.each([
    ['Docker lists a network with it: a second network, refused and named', view(FOO), held('2026-11-29T10:00:00.000Z'), s, 'refuse', /already used by network weave:foo \(ffffffffffff\) on this host \(h1\)/],
    ['Docker lists none, the reference is older than any create in flight: the create asked again takes it over', view(BAR), held('2026-11-29T11:59:59.000Z'), s, 'adopt', null],
    ['the same without a time on the reference: counts as taken at ipam start', view(), held(null), s, 'adopt', null],
    ['Docker lists none, but the reference is younger than a create can take: it may be in flight', view(), held('2026-11-29T12:00:00.000Z'), s, 'refuse', /taken moments ago by a network being created on this host \(h1\).*if that create failed, try again in 1 s/],
    ['a young reference: the wait is until it is older than the grace', view(), held('2026-11-29T12:00:41.500Z'), s, 'refuse', /try again in 42 s/],
    ['a leftover of another ip-range: released, then joined afresh', view(), held('2026-11-29T10:00:00.000Z', '10.99.0.128/25'), s, 'replace', null],
    ['the same, with another range asked', view(), held('2026-11-29T10:00:00.000Z'), spec('10.99.0.0/24', '10.99.0.0/25'), 'replace', null],
  ])('%s', (_what, v, record, asked, kind, reason) => {
    const verdict = heldVerdict(record, 'h1', asked, ctx(v));
    expect(verdict.kind).toBe(kind);
    if (reason) expect(verdict.kind === 'refuse' ? verdict.reason : '').toMatch(reason);
  });

  it('a reference without a time, with ipam only just started: refused, it may be in flight', () => {
    expect(heldVerdict(held(null), 'h1', s, ctx(view(), '2026-11-29T12:00:30.000Z')).kind).toBe('refuse');
  });

  it('decideJoin takes a leftover over: same record and PoolID, still one reference, its time renewed', () => {
    const record = held('2026-11-29T10:00:00.000Z', null, { h1: 1, h2: 1 });
    const d = decideJoin(record, n('h1'), (cur) => heldVerdict(cur, 'h1', s, ctx(view())));
    expect(d.result).toEqual({ kind: 'adopted', record: { ...record, since: { h1: '2026-11-29T12:05:00.000Z', h2: '2026-11-29T10:00:00.000Z' } } });
    expect(d.change).toEqual({ put: d.result.record });
  });

  it('decideJoin refuses with the verdict\'s reason, and hands a stale range back to the caller untouched', () => {
    const record = held('2026-11-29T10:00:00.000Z');
    expect(() => decideJoin(record, n('h1'), (cur) => heldVerdict(cur, 'h1', s, ctx(view(FOO))))).toThrow(ConflictError);
    const stale = held('2026-11-29T10:00:00.000Z', '10.99.0.128/25');
    expect(decideJoin(stale, n('h1'), (cur) => heldVerdict(cur, 'h1', s, ctx(view())))).toEqual({ change: { keep: true }, result: { kind: 'stale', record: stale } });
  });

  it('without Docker\'s list: refused as a second network would be', () => {
    expect(() => decideJoin(held('2026-11-29T10:00:00.000Z'), n('h1'))).toThrow(new ConflictError('subnet 10.99.0.0/24 is already used by another network on this host (h1)'));
  });

  it('Docker\'s list plays no part for a pool this host does not hold', () => {
    const record = held('2026-11-29T10:00:00.000Z', null, { h2: 1 });
    const never = () => {
      throw new Error('not asked');
    };
    expect(decideJoin(record, n('h1'), never).result.kind).toBe('joined');
    expect(decideJoin(null, n('h1'), never).result.kind).toBe('created');
  });
});

describe('a ReleasePool', () => {
  const record = held('2026-11-29T10:00:00.000Z');
  it.each([
    ['while Docker still lists a network with the subnet: not that network\'s, kept', record, view(FOO), [{ id: FOO.id, name: 'weave:foo' }]],
    ['of a removal or a rollback (Docker lists none with it): released', record, view(BAR), null],
    ['without Docker\'s list: released as asked', record, null, null],
    ['for a pool this host does not hold: nothing to keep', { ...record, holders: { h2: 1 } }, view(FOO), null],
    ['for a pool that is gone', null, view(FOO), null],
  ])('%s', (_what, r, v, kept) => {
    expect(keptFor(r, 'h1', v)).toEqual(kept);
  });
});
