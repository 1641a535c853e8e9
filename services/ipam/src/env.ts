import { CidrString } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { METRICS_PORTS, MetricsPort } from '@weave/metrics';
import { bitsOf, parseCidr } from '@weave/netaddr';
import { z } from 'zod';
import type { IpamConfig } from './deps';
import type { HostLeaseConfig } from './hosts';

const isPowerOfTwo = (n: number): boolean => Number.isInteger(Math.log2(n));

/** The service's variables (runService adds the common ones: WEAVE_HOST, WEAVE_NATS_URL, …). */
export const IpamEnv = z.object({
  WEAVE_IPAM_RANGE: CidrString.default('10.32.0.0/12'),
  WEAVE_IPAM_DEFAULT_PREFIX: z.coerce.number().int().min(1).max(32).default(24),
  WEAVE_IPAM_BLOCK_SIZE: z.coerce.number().int().min(1).max(65536).refine(isPowerOfTwo, 'must be a power of two').default(64),
  /** How often this host renews its record (see hosts.ts). */
  WEAVE_IPAM_RENEW_MS: z.coerce.number().int().min(100).max(3_600_000).default(10_000),
  /** How long a host may go unrenewed before a survivor reclaims its blocks. */
  WEAVE_IPAM_HOST_LEASE_MS: z.coerce.number().int().min(1000).max(86_400_000).default(300_000),
  /** How long an address Docker released stays kept for its container's own MAC (see core/sticky.ts); 0: not at all. */
  WEAVE_IPAM_KEEP_MS: z.coerce.number().int().min(0).max(30 * 86_400_000).default(3_600_000),
  /** Prometheus metrics on 127.0.0.1:<port>/metrics; 0 or off: none. */
  WEAVE_IPAM_METRICS_PORT: MetricsPort(METRICS_PORTS.ipam),
});
export type IpamEnv = z.output<typeof IpamEnv>;

/**
 * The checks that span variables. runService validates the fields one by one (it extends the
 * common schema with this one's shape), so these run here, at start, before anything listens.
 */
export function ipamConfig(env: IpamEnv): IpamConfig {
  const defaultRange = parseCidr(env.WEAVE_IPAM_RANGE);
  const prefix = env.WEAVE_IPAM_DEFAULT_PREFIX;
  if (defaultRange.family !== 4) throw new InvalidRequestError(`WEAVE_IPAM_RANGE=${env.WEAVE_IPAM_RANGE}: default subnets are IPv4 only for now`);
  if (prefix < defaultRange.prefix || prefix > bitsOf(4)) {
    throw new InvalidRequestError(`WEAVE_IPAM_DEFAULT_PREFIX=${prefix} must lie between the range's own /${defaultRange.prefix} and /32`);
  }
  return { defaultRange, defaultPrefix: prefix, blockSize: env.WEAVE_IPAM_BLOCK_SIZE, keepMs: env.WEAVE_IPAM_KEEP_MS };
}

/**
 * A lease must outlast a few renewals: one missed renewal (a GC pause, a slow KV write) must not
 * get a live host reclaimed.
 */
export function hostLeaseConfig(env: IpamEnv): HostLeaseConfig {
  const { WEAVE_IPAM_RENEW_MS: renewMs, WEAVE_IPAM_HOST_LEASE_MS: leaseMs } = env;
  if (leaseMs < 3 * renewMs) throw new InvalidRequestError(`WEAVE_IPAM_HOST_LEASE_MS=${leaseMs} must be at least three times WEAVE_IPAM_RENEW_MS=${renewMs}`);
  return { renewMs, leaseMs };
}
