import { readEnv } from '@weave/config';
import { formatCidr } from '@weave/netaddr';
import { hostLeaseConfig, IpamEnv, ipamConfig } from '../src/env';

describe('environment', () => {
  it('has defaults for everything', () => {
    const env = readEnv(IpamEnv, {});
    expect(env).toEqual({
      WEAVE_IPAM_RANGE: '10.32.0.0/12',
      WEAVE_IPAM_DEFAULT_PREFIX: 24,
      WEAVE_IPAM_BLOCK_SIZE: 64,
      WEAVE_IPAM_METRICS_PORT: 9782,
      WEAVE_IPAM_RENEW_MS: 10_000,
      WEAVE_IPAM_HOST_LEASE_MS: 300_000,
      WEAVE_IPAM_KEEP_MS: 3_600_000,
    });
    expect(hostLeaseConfig(env)).toEqual({ renewMs: 10_000, leaseMs: 300_000 });
    const config = ipamConfig(env);
    expect({ ...config, defaultRange: formatCidr(config.defaultRange) }).toEqual({ defaultRange: '10.32.0.0/12', defaultPrefix: 24, blockSize: 64, keepMs: 3_600_000 });
  });

  it.each([
    [{ WEAVE_IPAM_BLOCK_SIZE: '48' }, /WEAVE_IPAM_BLOCK_SIZE: must be a power of two/],
    [{ WEAVE_IPAM_RANGE: '10.32.0.1/12' }, /WEAVE_IPAM_RANGE/],
  ])('refuses %j', (vars, message) => {
    expect(() => readEnv(IpamEnv, vars)).toThrow(message);
  });

  it.each([
    [{ WEAVE_IPAM_RANGE: '10.32.0.0/16', WEAVE_IPAM_DEFAULT_PREFIX: '12' }, /WEAVE_IPAM_DEFAULT_PREFIX=12 must lie between/],
    [{ WEAVE_IPAM_RANGE: 'fd00::/48' }, /IPv4 only/],
  ])('refuses the combination %j', (vars, message) => {
    expect(() => ipamConfig(readEnv(IpamEnv, vars))).toThrow(message);
  });

  it('refuses a host lease shorter than three renewals', () => {
    const env = readEnv(IpamEnv, { WEAVE_IPAM_RENEW_MS: '10000', WEAVE_IPAM_HOST_LEASE_MS: '20000' });
    expect(() => hostLeaseConfig(env)).toThrow(/WEAVE_IPAM_HOST_LEASE_MS=20000 must be at least three times WEAVE_IPAM_RENEW_MS=10000/);
  });
});
