import { InvalidRequestError } from '@weave/errors';
import { formatCidr, parseCidr, parseIp } from '@weave/netaddr';
import { blockKey, blockOfKey, cidrOfPoolKey, ipOfLeaseKey, leaseKey, parsePoolId, poolIdOf, poolKey } from '../src/core/keys';
import { blocksOf, capacity, chooseSubnet, defaultGateway, isReserved, nextFree } from '../src/core/space';

describe('keys', () => {
  it.each(['10.99.0.0/24', '10.32.0.0/12', 'fd00:1::/64', '192.168.7.8/29'])('pool id and keys round-trip for %s', (text) => {
    const c = parseCidr(text);
    expect(formatCidr(parsePoolId(poolIdOf(c)))).toBe(text);
    expect(formatCidr(cidrOfPoolKey(poolKey(c)))).toBe(text);
    expect(poolKey(c)).toMatch(/^[-/_=.a-zA-Z0-9]+$/);
    const ip = { family: c.family, value: c.base + 5n };
    expect(ipOfLeaseKey(leaseKey(c, ip), c.family)).toEqual(ip);
    expect(formatCidr(blockOfKey(blockKey(c, c), c.family))).toBe(text);
  });
  it.each(['', 'weave:', 'weave:10.0.0.1/24', 'probe-10.0.0.0/24', 'weave:nonsense', 'weave:10.0.0.0/33'])('rejects pool id %j', (id) => {
    expect(() => parsePoolId(id)).toThrow(InvalidRequestError);
  });
});

describe('space', () => {
  const p24 = parseCidr('10.0.0.0/24');
  it.each([
    ['10.0.0.0/24', '10.0.0.0', true],
    ['10.0.0.0/24', '10.0.0.255', true],
    ['10.0.0.0/24', '10.0.0.1', false],
    ['10.0.0.0/31', '10.0.0.0', false],
    ['10.0.0.0/32', '10.0.0.0', false],
    ['fd00::/64', 'fd00::', true],
    ['fd00::/64', 'fd00::ffff:ffff:ffff:ffff', false],
  ])('in %s, %s reserved: %s', (pool, ip, reserved) => {
    expect(isReserved(parseCidr(pool), parseIp(ip).value)).toBe(reserved);
  });

  it.each([
    ['10.0.0.0/24', 64, ['10.0.0.0/26', '10.0.0.64/26', '10.0.0.128/26', '10.0.0.192/26']],
    ['10.0.0.8/29', 64, ['10.0.0.8/29']],
    ['10.0.0.0/30', 2, ['10.0.0.0/31', '10.0.0.2/31']],
    ['10.0.0.7/32', 64, ['10.0.0.7/32']],
  ])('%s in blocks of %i', (range, size, blocks) => {
    expect(blocksOf(parseCidr(range), size).map(formatCidr)).toEqual(blocks);
  });

  it('caps the blocks of a huge IPv6 range', () => {
    const b = blocksOf(parseCidr('fd00::/64'), 64);
    expect(b).toHaveLength(4096);
    expect(formatCidr(b[1]!)).toBe('fd00::40/122');
  });

  it('finds the lowest free, unreserved address', () => {
    const block = parseCidr('10.0.0.0/26');
    expect(nextFree(block, p24, new Set())).toBe(parseIp('10.0.0.1').value);
    expect(nextFree(block, p24, new Set([parseIp('10.0.0.1').value, parseIp('10.0.0.2').value]))).toBe(parseIp('10.0.0.3').value);
    const full = new Set(Array.from({ length: 64 }, (_, i) => parseIp(`10.0.0.${i}`).value));
    expect(nextFree(block, p24, full)).toBeNull();
    const last = parseCidr('10.0.0.252/30');
    expect(nextFree(last, p24, new Set([parseIp('10.0.0.252').value, parseIp('10.0.0.253').value, parseIp('10.0.0.254').value]))).toBeNull();
  });

  it.each([
    ['10.0.0.0/24', '10.0.0.0/24', 254n],
    ['10.0.0.8/29', '10.0.0.0/24', 8n],
    ['10.0.0.0/29', '10.0.0.0/24', 7n],
    ['10.0.0.0/31', '10.0.0.0/31', 2n],
  ])('capacity of %s in %s is %s', (range, pool, n) => {
    expect(capacity(parseCidr(range), parseCidr(pool))).toBe(n);
  });

  it('default gateways', () => {
    expect(defaultGateway(p24)).toEqual(parseIp('10.0.0.1'));
    expect(defaultGateway(parseCidr('fd00::/64'))).toEqual(parseIp('fd00::1'));
  });

  it('chooses the lowest subnet clear of pools and routes', () => {
    const range = parseCidr('10.32.0.0/12');
    expect(formatCidr(chooseSubnet(range, 24, [])!)).toBe('10.32.0.0/24');
    expect(formatCidr(chooseSubnet(range, 24, [parseCidr('10.32.0.0/24'), parseCidr('10.32.1.0/24')])!)).toBe('10.32.2.0/24');
    // A route covering a big chunk is skipped in one jump.
    expect(formatCidr(chooseSubnet(range, 24, [parseCidr('10.32.0.0/14')])!)).toBe('10.36.0.0/24');
    expect(formatCidr(chooseSubnet(range, 24, [parseCidr('10.0.0.0/8'), parseCidr('10.32.0.0/24')]) ?? parseCidr('0.0.0.0/0'))).toBe('0.0.0.0/0');
    expect(chooseSubnet(parseCidr('10.0.0.0/24'), 16, [])).toBeNull();
  });
});
