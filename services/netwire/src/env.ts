import { MeshPasswordEnv } from '@weave/config';
import { METRICS_PORTS, MetricsPort } from '@weave/metrics';
import { z } from 'zod';
import { MTU_MAX, MTU_MIN } from './mtu';

const unsetIfEmpty = (v: unknown): unknown => (v === '' ? undefined : v);

/** netwire's own environment, on top of CommonEnv. */
export const NetwireEnv = MeshPasswordEnv.extend({
  /** The MTU for networks that do not set one; default: the default-route interface's less 50. */
  WEAVE_MTU: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(/^\d+$/, 'must be a whole number')
      .transform(Number)
      .pipe(z.number().int().min(MTU_MIN).max(MTU_MAX))
      .optional(),
  ),
  /**
   * Work in this named network namespace (/run/netns/<name>) instead of netwire's own: a
   * simulated host runs its netwire so. Unset in production (host networking).
   */
  WEAVE_NETNS: z.preprocess(unsetIfEmpty, z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional()),
  /**
   * Where net.ipv4.conf can be written (published ports on loopback set a bridge's
   * route_localnet); compose mounts the host's /proc/sys/net/ipv4/conf there, as /proc/sys is
   * read-only in a container. Default: /proc/sys/net/ipv4/conf.
   */
  WEAVE_IPV4_CONF_DIR: z.preprocess(unsetIfEmpty, z.string().startsWith('/').optional()),
  /**
   * Weave DNS (on): containers resolve the mesh's container names and aliases, bare or under
   * weave.local, through the network's gateway; off: only Docker's own (same host) names.
   */
  WEAVE_DNS: z.preprocess(unsetIfEmpty, z.enum(['on', 'off']).default('on')),
  /** The host's resolvers, which weave DNS stands in for and passes other names on to. */
  WEAVE_RESOLV_CONF: z.preprocess(unsetIfEmpty, z.string().startsWith('/').default('/etc/resolv.conf')),
  /** Prometheus metrics on 127.0.0.1:<port>/metrics; 0 or off: none. */
  WEAVE_NETWIRE_METRICS_PORT: MetricsPort(METRICS_PORTS.netwire),
});
export type NetwireEnv = z.output<typeof NetwireEnv>;
