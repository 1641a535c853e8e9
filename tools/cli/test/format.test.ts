import { eventLine, rmpeerProgressLine, table } from '../src/format';

test('table aligns columns like docker ps', () => {
  expect(table(['NETWORK', 'MTU'], [['abc', '1450'], ['a-much-longer-id', '9000']])).toBe(
    ['NETWORK           MTU', 'abc               1450', 'a-much-longer-id  9000'].join('\n'),
  );
});

test('an event is one readable line', () => {
  const line = eventLine({ v: 1, seq: 3, time: '2026-01-01T00:00:00.000Z', host: 'h1', service: 'ipam', kind: 'address.allocated', data: { poolId: 'p', address: '10.0.0.2/24', kind: 'endpoint' } });
  expect(line).toBe('2026-01-01T00:00:00.000Z  h1  ipam  address.allocated  poolId=p address=10.0.0.2/24 kind=endpoint');
});

describe('rmpeer progress', () => {
  const ev = (service: 'ipam' | 'netwire', kind: string, data: unknown) => ({ v: 1, seq: 1, time: '2026-01-01T00:00:00.000Z', host: 'h1', service, kind, data });
  it.each<[ReturnType<typeof ev>, string | null]>([
    [ev('ipam', 'block.released', { poolId: 'p', block: '10.32.1.0/26' }), 'released block 10.32.1.0/26'],
    [ev('ipam', 'address.released', { poolId: 'p', address: '10.32.1.5' }), 'released address 10.32.1.5'],
    [ev('ipam', 'pool.released', { poolId: 'p1', pool: '10.32.0.0/16', holders: 1 }), 'dropped a reference to pool p1'],
    [ev('ipam', 'host.reclaimed', { host: 'h3', epoch: 4, by: 'h1', blocks: [], addresses: [], pools: [] }), 'reclaimed h3 (epoch 4)'],
    [ev('ipam', 'address.allocated', { poolId: 'p', address: '10.32.1.9/24', kind: 'endpoint' }), null],
    [ev('netwire', 'block.released', {}), null],
  ])('%j', (e, line) => {
    expect(rmpeerProgressLine(e as Parameters<typeof rmpeerProgressLine>[0])).toBe(line);
  });
});
