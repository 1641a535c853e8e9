import { ConflictError, InvalidRequestError, NotFoundError } from '@weave/errors';
import { Cidr, formatCidr, formatIp, parseCidr, parseIp } from '@weave/netaddr';
import { blockKey, cidrOfPoolKey, leaseKey, parsePoolId, poolIdOf, poolKey, valueOfChildKey } from '../src/core/keys';
import { decideGateway, decideGatewayGone, decideJoin, decideLeave, NewPool, newPoolRecord, PoolRecord } from '../src/core/records';
import { poolStatus } from '../src/core/status';
import { blockOf, blocksOf, capacity, chooseSubnet, describeRange, firstUsable, isReserved, nextFree, staticProblem } from '../src/core/space';

const c = (text: string) => parseCidr(text);
const ip = (text: string) => parseIp(text).value;
const ips = (...texts: string[]) => new Set(texts.map(ip));
const fmt = (pool: Cidr, v: bigint | null) => (v === null ? null : formatIp({ family: pool.family, value: v }));
const take = <T>(g: Iterable<T>, n: number): T[] => {
  const out: T[] = [];
  for (const x of g) if (out.push(x) >= n) break;
  return out;
};

describe('keys', () => {
  it.each([
    ['10.99.0.0/24', 'v4-0a630000-24', '10.99.0.2', 'v4-0a630000-24.0a630002'],
    ['10.32.0.0/12', 'v4-0a200000-12', '10.47.255.254', 'v4-0a200000-12.0a2ffffe'],
    ['0.0.0.0/0', 'v4-00000000-0', '255.255.255.255', 'v4-00000000-0.ffffffff'],
    ['fd00:1::/64', 'v6-fd000001000000000000000000000000-64', 'fd00:1::2', 'v6-fd000001000000000000000000000000-64.fd000001000000000000000000000002'],
  ])('%s is pool key %s; its lease for %s is %s', (pool, key, addr, lease) => {
    expect(poolKey(c(pool))).toBe(key);
    expect(formatCidr(cidrOfPoolKey(key)!)).toBe(pool);
    expect(leaseKey(c(pool), ip(addr))).toBe(lease);
    expect(valueOfChildKey(c(pool), lease)).toBe(ip(addr));
    expect(blockKey(c(pool), c(pool).base)).toMatch(/^[-/_=.a-zA-Z0-9]+$/);
    expect(lease).toMatch(/^[-/_=.a-zA-Z0-9]+$/);
  });

  it.each(['', 'v4-0a63-24', 'v4-0a630001-24', 'v4-0a630000-33', 'v5-0a630000-24', 'V4-0A630000-24', 'v4-0a630000-24.01'])('%j is no pool key', (key) => {
    expect(cidrOfPoolKey(key)).toBeNull();
  });

  it.each(['v4-0a630000-24.0a63', 'v4-0a630000-24.0a63000g', 'v4-0b630000-24.0a630001', 'v4-0a630000-24.0a630001.00'])('%j is no child of 10.99.0.0/24', (key) => {
    expect(valueOfChildKey(c('10.99.0.0/24'), key)).toBeNull();
  });
});

describe('pool ids', () => {
  it.each([
    ['10.99.0.0/24', null, 'weave:10.99.0.0/24'],
    ['10.99.0.0/24', '10.99.0.128/25', 'weave:10.99.0.0/24:10.99.0.128/25'],
    ['10.99.0.7/32', null, 'weave:10.99.0.7/32'],
    ['fd00:1::/64', null, 'weave:fd00:1::/64'],
    ['fd00:1::/64', 'fd00:1::80/121', 'weave:fd00:1::/64:fd00:1::80/121'],
    ['::/0', '::/1', 'weave:::/0:::/1'],
  ])('%s with ip-range %s is %s, and back', (pool, subPool, id) => {
    const spec = { pool: c(pool), subPool: subPool === null ? null : c(subPool) };
    expect(poolIdOf(spec)).toBe(id);
    expect(parsePoolId(id)).toEqual(spec);
  });

  it.each([
    '',
    'weave:',
    'garbage',
    'probe-10.0.0.0/24',
    'LocalDefault/10.0.0.0/24',
    'weave:10.0.0.1/24', // host bits set
    'weave:10.0.0.0/33',
    'weave:10.0.0.0/24:10.1.0.0/25', // ip-range outside the pool
    'weave:10.0.0.0/24:10.0.0.0/24:10.0.0.0/25',
    'weave:10.000.0.0/24',
    'weave:FD00:1::/64', // not the form we issue
    'weave:nonsense/24',
    'weave:10.0.0.0/24 ',
  ])('rejects %j', (id) => {
    expect(() => parsePoolId(id)).toThrow(InvalidRequestError);
  });
});

describe('reserved and usable addresses', () => {
  it.each([
    ['10.0.0.0/24', '10.0.0.0', true],
    ['10.0.0.0/24', '10.0.0.255', true],
    ['10.0.0.0/24', '10.0.0.1', false],
    ['10.0.0.0/30', '10.0.0.3', true],
    ['10.0.0.0/31', '10.0.0.0', false],
    ['10.0.0.0/31', '10.0.0.1', false],
    ['10.0.0.0/32', '10.0.0.0', false],
    ['fd00::/64', 'fd00::', true],
    ['fd00::/64', 'fd00::ffff:ffff:ffff:ffff', false],
  ])('in %s, %s reserved: %s', (pool, addr, reserved) => {
    expect(isReserved(c(pool), ip(addr))).toBe(reserved);
  });

  it.each([
    ['10.99.0.0/24', '10.99.0.1'],
    ['10.99.0.0/30', '10.99.0.1'],
    ['10.99.0.0/31', '10.99.0.0'],
    ['10.99.0.5/32', '10.99.0.5'],
    ['fd00::/64', 'fd00::1'],
    ['fd00::100/120', 'fd00::101'],
  ])('the default gateway of %s is %s', (pool, gw) => {
    expect(fmt(c(pool), firstUsable(c(pool)))).toBe(gw);
  });

  it.each([
    ['10.99.0.0/24', '10.99.0.50', null],
    ['10.99.0.0/24', '10.98.0.50', 'address 10.98.0.50 is not in pool 10.99.0.0/24'],
    ['10.99.0.0/24', '10.99.0.0', 'address 10.99.0.0 is the network address of 10.99.0.0/24'],
    ['10.99.0.0/24', '10.99.0.255', 'address 10.99.0.255 is the broadcast address of 10.99.0.0/24'],
    ['10.99.0.0/31', '10.99.0.1', null],
    ['10.99.0.0/24', 'fd00::1', 'address fd00::1 is not in pool 10.99.0.0/24'],
  ])('in %s, static %s: %s', (pool, addr, problem) => {
    expect(staticProblem(c(pool), parseIp(addr))).toBe(problem);
  });

  it.each([
    ['10.0.0.0/24', '10.0.0.0/24', 254n],
    ['10.0.0.8/29', '10.0.0.0/24', 8n],
    ['10.0.0.0/29', '10.0.0.0/24', 7n],
    ['10.0.0.248/29', '10.0.0.0/24', 7n],
    ['10.0.0.0/30', '10.0.0.0/30', 2n],
    ['10.0.0.0/31', '10.0.0.0/31', 2n],
    ['10.0.0.0/32', '10.0.0.0/32', 1n],
    ['fd00::/120', 'fd00::/120', 255n],
  ])('%s in pool %s has room for %s', (range, pool, n) => {
    expect(capacity(c(range), c(pool))).toBe(n);
  });

  it('describes a range in user terms', () => {
    expect(describeRange(c('10.99.0.0/24'), c('10.99.0.0/24'))).toBe('10.99.0.0/24');
    expect(describeRange(c('10.99.0.8/29'), c('10.99.0.0/24'))).toBe('10.99.0.8/29 (ip-range of pool 10.99.0.0/24)');
  });
});

describe('blocks', () => {
  it.each([
    ['10.0.0.0/24', 64, ['10.0.0.0/26', '10.0.0.64/26', '10.0.0.128/26', '10.0.0.192/26']],
    ['10.0.0.0/24', 256, ['10.0.0.0/24']],
    ['10.0.0.8/29', 64, ['10.0.0.8/29']], // an ip-range smaller than a block is one block
    ['10.0.0.0/30', 64, ['10.0.0.0/30']],
    ['10.0.0.0/30', 2, ['10.0.0.0/31', '10.0.0.2/31']],
    ['10.0.0.0/31', 64, ['10.0.0.0/31']],
    ['10.0.0.7/32', 64, ['10.0.0.7/32']],
    ['10.0.0.4/30', 1, ['10.0.0.4/32', '10.0.0.5/32', '10.0.0.6/32', '10.0.0.7/32']],
    ['fd00::/120', 64, ['fd00::/122', 'fd00::40/122', 'fd00::80/122', 'fd00::c0/122']],
  ])('%s in blocks of %i', (range, size, blocks) => {
    expect([...blocksOf(c(range), size)].map(formatCidr)).toEqual(blocks);
  });

  it('walks a v6 /64 lazily', () => {
    const first = take(blocksOf(c('fd00::/64'), 64), 3).map(formatCidr);
    expect(first).toEqual(['fd00::/122', 'fd00::40/122', 'fd00::80/122']);
  });

  it.each([
    ['10.0.0.0/24', 64, '10.0.0.77', '10.0.0.64/26'],
    ['10.0.0.8/29', 64, '10.0.0.9', '10.0.0.8/29'],
    ['fd00::/64', 64, 'fd00::1:5', 'fd00::1:0/122'],
  ])('in %s with blocks of %i, %s lies in %s', (range, size, addr, block) => {
    expect(formatCidr(blockOf(c(range), size, ip(addr)))).toBe(block);
  });

  it.each([
    ['10.0.0.0/26', '10.0.0.0/24', [], '10.0.0.1'],
    ['10.0.0.0/26', '10.0.0.0/24', ['10.0.0.1', '10.0.0.2'], '10.0.0.3'],
    ['10.0.0.192/26', '10.0.0.0/24', [], '10.0.0.192'],
    ['10.0.0.252/30', '10.0.0.0/24', ['10.0.0.252', '10.0.0.253', '10.0.0.254'], null], // .255 is broadcast
    ['10.0.0.0/30', '10.0.0.0/30', ['10.0.0.1'], '10.0.0.2'],
    ['10.0.0.0/30', '10.0.0.0/30', ['10.0.0.1', '10.0.0.2'], null],
    ['10.0.0.0/31', '10.0.0.0/31', ['10.0.0.0'], '10.0.0.1'],
    ['10.0.0.9/32', '10.0.0.9/32', [], '10.0.0.9'],
    ['10.0.0.9/32', '10.0.0.9/32', ['10.0.0.9'], null],
    ['10.0.0.8/29', '10.0.0.0/24', [], '10.0.0.8'], // an ip-range's own first address is a host of the pool
    ['fd00::/122', 'fd00::/64', [], 'fd00::1'],
    ['fd00::/122', 'fd00::/120', ['fd00::1', 'fd00::2'], 'fd00::3'],
  ])('in block %s of pool %s with %j used, the next free is %s', (block, pool, used, next) => {
    expect(fmt(c(pool), nextFree(c(block), c(pool), ips(...used)))).toBe(next);
  });
});

describe('default subnets', () => {
  const range = c('10.32.0.0/12');
  it.each([
    [[], '10.32.0.0/24'],
    [['10.32.0.0/24', '10.32.1.0/24'], '10.32.2.0/24'],
    [['10.32.0.0/24', '10.32.2.0/24'], '10.32.1.0/24'], // a hole left by a removed network is reused
    [['10.32.0.5/32'], '10.32.1.0/24'], // an address of this host
    [['10.32.0.0/14'], '10.36.0.0/24'], // a big route is skipped in one jump
    [['10.0.0.0/8'], null],
    [['10.32.0.0/25', '10.32.0.128/25', '10.32.1.64/26'], '10.32.2.0/24'],
    [['192.168.0.0/16', 'fd00::/8', '10.47.255.0/24'], '10.32.0.0/24'],
  ])('with %j taken: %s', (taken, want) => {
    const got = chooseSubnet(range, 24, taken.map((t) => c(t)));
    expect(got && formatCidr(got)).toBe(want);
  });

  it('takes the last subnet of the range, and then there is none', () => {
    const small = c('10.32.0.0/23');
    expect(formatCidr(chooseSubnet(small, 24, [c('10.32.0.0/24')])!)).toBe('10.32.1.0/24');
    expect(chooseSubnet(small, 24, [c('10.32.0.0/24'), c('10.32.1.0/24')])).toBeNull();
  });

  it('refuses prefixes outside the range', () => {
    expect(chooseSubnet(c('10.0.0.0/24'), 16, [])).toBeNull();
    expect(chooseSubnet(c('10.0.0.0/24'), 33, [])).toBeNull();
  });
});

describe('pool records', () => {
  const spec = { pool: c('10.99.0.0/24'), subPool: null };
  const n = (host: string, gen = 'g1'): NewPool => ({ spec, poolId: 'weave:10.99.0.0/24', host, blockSize: 64, gen });

  it('the first host creates the record, the next joins it', () => {
    const created = decideJoin(null, n('h1'));
    expect(created.result.kind).toBe('created');
    const record = created.result.record;
    expect(record).toEqual({ poolId: 'weave:10.99.0.0/24', pool: '10.99.0.0/24', subPool: null, v6: false, gateway: null, blockSize: 64, gen: 'g1', holders: { h1: 1 } });
    const joined = decideJoin(record, n('h2', 'ignored'));
    expect(joined.result).toEqual({ kind: 'joined', record: { ...record, holders: { h1: 1, h2: 1 } } });
  });

  it('refuses the same subnet twice on one host, and another ip-range', () => {
    const record = newPoolRecord(n('h1'));
    expect(() => decideJoin(record, n('h1'))).toThrow(new ConflictError('subnet 10.99.0.0/24 is already used by another network on this host (h1)'));
    const other = { ...n('h2'), spec: { pool: spec.pool, subPool: c('10.99.0.0/25') }, poolId: 'weave:10.99.0.0/24:10.99.0.0/25' };
    expect(() => decideJoin(record, other)).toThrow(/already used with no --ip-range on host\(s\) h1/);
  });

  it('a record without holders is being removed: joining waits for that', () => {
    expect(decideJoin({ ...newPoolRecord(n('h1')), holders: {} }, n('h2')).result.kind).toBe('draining');
  });

  it('leaving counts down and keeps the record for the drain', () => {
    const record = { ...newPoolRecord(n('h1')), holders: { h1: 1, h2: 2 } };
    expect(decideLeave(record, record.poolId, 'h2').result).toEqual({ record: { ...record, holders: { h1: 1, h2: 1 } }, left: true });
    expect(decideLeave(record, record.poolId, 'h1').result).toEqual({ record: { ...record, holders: { h2: 2 } }, left: true });
    expect(decideLeave({ ...record, holders: {} }, record.poolId, 'h1').result.left).toBe(false);
    expect(() => decideLeave(null, record.poolId, 'h1')).toThrow(NotFoundError);
    expect(() => decideLeave(record, 'weave:10.99.0.0/24:10.99.0.0/25', 'h1')).toThrow(NotFoundError);
  });

  it('the first gateway recorded stands', () => {
    const record: PoolRecord = newPoolRecord(n('h1'));
    expect(decideGateway(record, record.poolId, '10.99.0.1')).toEqual({ change: { put: { ...record, gateway: '10.99.0.1' } }, result: '10.99.0.1' });
    expect(decideGateway({ ...record, gateway: '10.99.0.254' }, record.poolId, '10.99.0.1')).toEqual({ change: { keep: true }, result: '10.99.0.254' });
    expect(decideGatewayGone({ ...record, gateway: '10.99.0.1' }, '10.99.0.1').change).toEqual({ put: record });
    expect(decideGatewayGone({ ...record, gateway: '10.99.0.1' }, '10.99.0.2').change).toEqual({ keep: true });
  });
});

describe('status', () => {
  it('counts leases per block, lowest block first', () => {
    const record: PoolRecord = { ...newPoolRecord({ spec: { pool: c('10.99.0.0/24'), subPool: null }, poolId: 'weave:10.99.0.0/24', host: 'h1', blockSize: 64, gen: 'g' }), holders: { h1: 1, h2: 1 }, gateway: '10.99.0.1' };
    const s = poolStatus(record, [{ base: ip('10.99.0.64'), owner: 'h2' }, { base: ip('10.99.0.0'), owner: 'h1' }], [ip('10.99.0.1'), ip('10.99.0.2'), ip('10.99.0.65'), ip('10.99.0.200')]);
    expect(s.blocks).toEqual([
      { block: '10.99.0.0/26', owner: 'h1', used: 2, size: 63 },
      { block: '10.99.0.64/26', owner: 'h2', used: 1, size: 64 },
    ]);
    expect(s).toMatchObject({ poolId: 'weave:10.99.0.0/24', gateway: '10.99.0.1', holders: { h1: 1, h2: 1 } });
  });
});
