import { contains, formatCidr, formatIp, overlaps, parseCidr, parseIp, parseIpInCidr, cidrSize, containsCidr } from './index';

describe('ip', () => {
  it.each([
    ['10.0.0.1', 4, 0x0a000001n],
    ['255.255.255.255', 4, 0xffffffffn],
    ['::1', 6, 1n],
    ['fd00::', 6, 0xfd00n << 112n],
    ['::ffff:10.0.0.1', 6, (0xffffn << 32n) | 0x0a000001n],
  ])('parses %s', (text, family, value) => {
    expect(parseIp(text)).toEqual({ family, value });
  });
  it.each(['10.0.0.1', '::1', 'fd00::1:0:0:2', '2001:db8::', '1:2:3:4:5:6:7:8', '::'])('round-trips %s', (text) => {
    expect(formatIp(parseIp(text))).toBe(text);
  });
  it.each(['', '10.0.0', '10.0.0.256', 'fd00:::1', 'foo', '10.0.0.1/24'])('rejects %j', (text) => {
    expect(() => parseIp(text)).toThrow(TypeError);
  });
});

describe('cidr', () => {
  it('parses and formats', () => {
    const c = parseCidr('10.32.0.0/12');
    expect(formatCidr(c)).toBe('10.32.0.0/12');
    expect(cidrSize(c)).toBe(1n << 20n);
  });
  it('refuses host bits unless loose, and names the fix', () => {
    expect(() => parseCidr('10.1.2.3/24')).toThrow(/did you mean 10.1.2.0\/24/);
    expect(formatCidr(parseCidr('10.1.2.3/24', { loose: true }))).toBe('10.1.2.0/24');
  });
  it.each(['10.0.0.0', '10.0.0.0/33', '10.0.0.0/x', 'fd00::/129'])('rejects %j', (t) => {
    expect(() => parseCidr(t)).toThrow(TypeError);
  });
  it('knows containment and overlap', () => {
    const a = parseCidr('10.1.0.0/16');
    expect(contains(a, parseIp('10.1.255.255'))).toBe(true);
    expect(contains(a, parseIp('10.2.0.0'))).toBe(false);
    expect(contains(a, parseIp('::1'))).toBe(false);
    expect(containsCidr(a, parseCidr('10.1.4.0/24'))).toBe(true);
    expect(containsCidr(parseCidr('10.1.4.0/24'), a)).toBe(false);
    expect(overlaps(a, parseCidr('10.0.0.0/8'))).toBe(true);
    expect(overlaps(a, parseCidr('10.2.0.0/16'))).toBe(false);
  });
  it('parses an address with its prefix', () => {
    const { ip, cidr } = parseIpInCidr('10.99.0.7/24');
    expect(formatIp(ip)).toBe('10.99.0.7');
    expect(formatCidr(cidr)).toBe('10.99.0.0/24');
  });
});
