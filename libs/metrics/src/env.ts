import { z } from 'zod';

/**
 * Each service's default metrics port, one after the other so they never collide on a host (all
 * run in the host's network namespace); set by WEAVE_<SERVICE>_METRICS_PORT.
 */
export const METRICS_PORTS = { 'plugin-api': 9781, ipam: 9782, netwire: 9783, router: 9784 } as const;

/** A metrics port variable: a port, or 0 / off for none (null). */
export const MetricsPort = (defaultPort: number) =>
  z
    .union([z.literal('off'), z.coerce.number().int().min(0).max(65535)], { error: 'must be a port (1-65535), or 0 or off for no metrics' })
    .transform((v): number | null => (v === 'off' || v === 0 ? null : v))
    .default(defaultPort);
