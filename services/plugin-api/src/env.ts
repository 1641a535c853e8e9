import { InvalidRequestError } from '@weave/errors';
import { METRICS_PORTS, MetricsPort } from '@weave/metrics';
import { z } from 'zod';

/** plugin-api's own environment, on top of CommonEnv. */
export const PluginApiEnv = z.object({
  /** The driver name users pass to -d and --ipam-driver; it names the socket Docker looks for. */
  WEAVE_PLUGIN_NAME: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/).default('weave'),
  WEAVE_PLUGIN_DIR: z.string().min(1).default('/run/docker/plugins'),
  WEAVE_RPC_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  WEAVE_BACKEND_WAIT_MS: z.coerce.number().int().min(0).max(120_000).default(30_000),
  /** The mesh-wide network catalogue keeps this host's Docker in line with the other hosts'. */
  WEAVE_CATALOGUE: z.enum(['on', 'off']).default('on'),
  WEAVE_DOCKER_SOCKET: z.string().min(1).default('/var/run/docker.sock'),
  /**
   * on: Docker is asked for each endpoint's MAC, and the address of a container with a MAC of its
   * own sticks to it across restarts (see sticky-macs.ts). Docker then gives every other container
   * a MAC it makes up, a new one on every start, which peers' ARP caches hold stale for a while;
   * off (the default): netwire derives those from the address (02:42 + IPv4 address), so a
   * container that gets its address back has its MAC back too.
   */
  WEAVE_STICKY_ADDRESSES: z.enum(['on', 'off']).default('off'),
  /** How often leases and endpoints Docker no longer has are dropped (also once at start). */
  WEAVE_RECONCILE_INTERVAL_MS: z.coerce.number().int().min(1000).max(86_400_000).default(60_000),
  /** How old a lease or endpoint Docker does not list must be before it is dropped; see reconcileSettings. */
  WEAVE_RECONCILE_GRACE_MS: z.coerce.number().int().min(1000).max(86_400_000).default(60_000),
  /** Prometheus metrics on 127.0.0.1:<port>/metrics; 0 or off: none. */
  WEAVE_PLUGIN_API_METRICS_PORT: MetricsPort(METRICS_PORTS['plugin-api']),
});
export type PluginApiEnv = z.output<typeof PluginApiEnv>;

/**
 * How long Docker keeps retrying a call to a plugin whose socket does not answer (a plugin-api
 * restarting) before it gives up: see the protocol reference, §1.4.
 */
export const DOCKER_RETRY_WINDOW_MS = 15_000;

/**
 * The reconciliation settings, checked against each other. The grace period must cover the
 * longest time from ipam writing a lease to Docker storing its endpoint: RequestAddress (at most
 * one RPC timeout, after which ipam gives the lease back), Docker retrying CreateEndpoint while
 * plugin-api restarts (DOCKER_RETRY_WINDOW_MS), then CreateEndpoint itself (at most one RPC
 * timeout, after which Docker rolls the endpoint back). A shorter grace could take the address of
 * a container that is starting.
 */
export function reconcileSettings(env: Pick<PluginApiEnv, 'WEAVE_RECONCILE_INTERVAL_MS' | 'WEAVE_RECONCILE_GRACE_MS' | 'WEAVE_RPC_TIMEOUT_MS'>): { intervalMs: number; graceMs: number } {
  const min = 2 * env.WEAVE_RPC_TIMEOUT_MS + DOCKER_RETRY_WINDOW_MS;
  if (env.WEAVE_RECONCILE_GRACE_MS < min) {
    throw new InvalidRequestError(
      `WEAVE_RECONCILE_GRACE_MS=${env.WEAVE_RECONCILE_GRACE_MS} is too short: an endpoint can take up to ${min} ms ` +
        `(2 × WEAVE_RPC_TIMEOUT_MS + ${DOCKER_RETRY_WINDOW_MS} ms of Docker's retries) from its lease to Docker recording it, ` +
        `and a shorter grace could release the address of a container that is starting`,
    );
  }
  return { intervalMs: env.WEAVE_RECONCILE_INTERVAL_MS, graceMs: env.WEAVE_RECONCILE_GRACE_MS };
}
