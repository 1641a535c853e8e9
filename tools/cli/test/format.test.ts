import { eventLine, table } from '../src/format';

test('table aligns columns like docker ps', () => {
  expect(table(['NETWORK', 'MTU'], [['abc', '1450'], ['a-much-longer-id', '9000']])).toBe(
    ['NETWORK           MTU', 'abc               1450', 'a-much-longer-id  9000'].join('\n'),
  );
});

test('an event is one readable line', () => {
  const line = eventLine({ v: 1, seq: 3, time: '2026-01-01T00:00:00.000Z', host: 'h1', service: 'ipam', kind: 'address.allocated', data: { poolId: 'p', address: '10.0.0.2/24', kind: 'endpoint' } });
  expect(line).toBe('2026-01-01T00:00:00.000Z  h1  ipam  address.allocated  poolId=p address=10.0.0.2/24 kind=endpoint');
});
