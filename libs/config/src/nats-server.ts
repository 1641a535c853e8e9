import { HostName } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { z } from 'zod';
import { DEFAULT_SECRETS_DIR, makeClusterSecretHint, NatsCredentials, routeCredentials } from './secrets';

const Port = z.coerce.number().int().min(1).max(65535);
const PEER = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])(?::(\d{1,5}))?$/;

/** `<addr>[:port],…` (commas or spaces) into the peers' addresses, each checked. */
const Peers = z
  .string()
  .transform((s) => s.split(/[\s,]+/).filter(Boolean))
  .pipe(z.array(z.string().regex(PEER, { error: (i) => `${JSON.stringify(i.input)} is not an address or address:port (IPv6 in brackets)` })));

/** What compose/host.yml gives the nats container (and its `secrets` init). */
export const NatsServerEnv = z.object({
  WEAVE_HOST: HostName.optional(),
  WEAVE_SECRETS_DIR: z.string().startsWith('/', 'must be an absolute path').default(DEFAULT_SECRETS_DIR),
  WEAVE_NATS_PORT: Port.default(4222),
  WEAVE_PEERS: Peers.default([]),
  /** Checked where it is read (readClusterSecret), which also knows the file it may come from. */
  WEAVE_CLUSTER_SECRET: z.string().optional(),
  WEAVE_NATS_CLUSTER_PORT: Port.default(6222),
  WEAVE_NATS_MONITOR_PORT: Port.default(8222),
});
export type NatsServerEnv = z.output<typeof NatsServerEnv>;

export interface NatsServerPlan {
  serverName: string;
  storeDir: string;
  /** Clients: on loopback only; null credentials means no authentication (tests). */
  client: { host: string; port: number; credentials: NatsCredentials | null };
  /** Routes to the other hosts' servers and the monitoring port the mesh tools read; null on one host. */
  cluster: { host: string; port: number; routes: string[]; secret: string; monitorPort: number } | null;
}

/**
 * Decides how this host's nats-server runs. One host: clients on loopback, no cluster port, no
 * monitoring. With peers: a cluster port on every address (the underlay) that lets in only
 * servers holding the mesh's secret, and monitoring on loopback. Refuses peers without a secret.
 */
export function planNatsServer(
  env: NatsServerEnv,
  o: { machineId: string | null; credentials: NatsCredentials | null; clusterSecret: string | null; storeDir?: string; clusterHost?: string },
): NatsServerPlan {
  const name = env.WEAVE_HOST ?? o.machineId;
  const client = { host: '127.0.0.1', port: env.WEAVE_NATS_PORT, credentials: o.credentials };
  const storeDir = o.storeDir ?? '/data';
  if (env.WEAVE_PEERS.length === 0) return { serverName: `weave-${name ?? 'host'}`, storeDir, client, cluster: null };
  // Every server of a JetStream cluster needs a name of its own.
  if (!name) throw new InvalidRequestError('WEAVE_PEERS is set but neither WEAVE_HOST nor /etc/machine-id names this server: set WEAVE_HOST');
  if (!o.clusterSecret) {
    throw new InvalidRequestError(
      `WEAVE_PEERS is set but there is no cluster secret: the hosts of a mesh let each other's nats-servers in only with a secret they share; ${makeClusterSecretHint(env.WEAVE_SECRETS_DIR)}`,
    );
  }
  const route = routeCredentials(o.clusterSecret);
  const routes = env.WEAVE_PEERS.map((p) => {
    const [, host, port] = PEER.exec(p)!;
    return `nats-route://${route.user}:${route.password}@${host}:${port ?? env.WEAVE_NATS_CLUSTER_PORT}`;
  });
  return {
    serverName: `weave-${name}`,
    storeDir,
    client,
    cluster: { host: o.clusterHost ?? '0.0.0.0', port: env.WEAVE_NATS_CLUSTER_PORT, routes, secret: o.clusterSecret, monitorPort: env.WEAVE_NATS_MONITOR_PORT },
  };
}

/**
 * nats-server's configuration for a plan, as JSON (which nats-server's config format includes),
 * so no value needs quoting rules of its own. It holds secrets: write it where only root reads.
 */
export function natsServerConfig(plan: NatsServerPlan): string {
  const conf: Record<string, unknown> = {
    server_name: plan.serverName,
    listen: `${plan.client.host}:${plan.client.port}`,
    jetstream: { store_dir: plan.storeDir },
  };
  if (plan.client.credentials) conf.authorization = { users: [{ user: plan.client.credentials.user, password: plan.client.credentials.password }] };
  if (plan.cluster) {
    const route = routeCredentials(plan.cluster.secret);
    conf.http = `127.0.0.1:${plan.cluster.monitorPort}`;
    conf.cluster = {
      name: 'weave',
      listen: `${plan.cluster.host}:${plan.cluster.port}`,
      authorization: { user: route.user, password: route.password, timeout: 2 },
      routes: plan.cluster.routes,
      // Clients use their own host's server only: do not hand them the other servers' addresses.
      no_advertise: true,
    };
  }
  return JSON.stringify(conf, null, 2) + '\n';
}
