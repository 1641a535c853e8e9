import { z } from 'zod';
import { CidrString, DockerId, HostName, IpString, IpWithPrefix, MacString, Mtu, WireId } from './primitives';
import { PublishedPort } from './ports';
import { AddressKind, ReclaimedAddress, ReclaimedBlock, ReleasedLease, ReleasedPool, RemovedEndpoint, RemovedNetwork, ServiceName } from './rpc';

/**
 * Every event kind each service publishes, with its payload. Subject:
 * weave.events.<host>.<service>.<kind>. `seq` counts up per (host, service) from 1 at each
 * process start, so a subscriber that sees a gap, or seq falling back, resyncs from state.
 */
export const EVENT_SCHEMA_VERSION = 1;

const Started = z.object({ version: z.string(), pid: z.number().int() });

export const EventKinds = {
  'plugin-api': {
    'service.started': Started,
    'docker.call.failed': z.object({ method: z.string(), message: z.string(), status: z.number().int() }),
    'network.published': z.object({ name: z.string(), subnets: z.array(CidrString) }),
    'network.replicated': z.object({ name: z.string(), createdBy: HostName }),
    'network.removed': z.object({ name: z.string(), removedBy: HostName }),
    'network.conflict': z.object({ name: z.string(), reason: z.string() }),
    /**
     * A container whose address another host holds (see endpoint.isolated), disconnected from the
     * network: `reconnected` with a fresh address (`newAddress`), or left `disconnected` because the
     * address was its own --ip (the reason says what to do).
     */
    'container.readdressed': z.object({
      containerId: DockerId,
      container: z.string(),
      networkId: DockerId,
      network: z.string(),
      address: IpString,
      takenBy: HostName,
      outcome: z.enum(['reconnected', 'disconnected']),
      newAddress: IpString.nullable(),
      reason: z.string(),
    }),
    /** A reconciliation pass against Docker that dropped something (passes that drop nothing are not announced). */
    /** A container's names on a weave network, now answered by weave DNS on every host (or no longer). */
    'dns.added': z.object({ containerId: DockerId, network: z.string(), names: z.array(z.string()), addresses: z.array(IpString) }),
    'dns.removed': z.object({ containerId: DockerId, network: z.string(), names: z.array(z.string()) }),
    'docker.reconciled': z.object({
      networks: z.number().int(),
      endpoints: z.number().int(),
      releasedAddresses: z.number().int(),
      releasedPools: z.number().int(),
      removedEndpoints: z.number().int(),
      removedNetworks: z.number().int(),
    }),
  },
  ipam: {
    'service.started': Started,
    'pool.requested': z.object({ poolId: z.string(), pool: CidrString, holders: z.number().int() }),
    'pool.released': z.object({ poolId: z.string(), pool: CidrString, holders: z.number().int() }),
    'block.claimed': z.object({ poolId: z.string(), block: CidrString }),
    'block.released': z.object({ poolId: z.string(), block: CidrString }),
    'address.allocated': z.object({ poolId: z.string(), address: IpWithPrefix, kind: AddressKind }),
    'address.released': z.object({ poolId: z.string(), address: IpString }),
    /** Docker released the address of a container with its own MAC: it stays leased for that MAC until `until` (see StickyLease). */
    'address.kept': z.object({ poolId: z.string(), address: IpString, mac: MacString, until: z.iso.datetime() }),
    /** A start of the container with that MAC got its kept address back. */
    'address.returned': z.object({ poolId: z.string(), address: IpWithPrefix, mac: MacString }),
    /** Leases and pool references of this host that Docker did not have, released by reconciliation (each also as address.released / pool.released). */
    'leases.reconciled': z.object({ released: z.array(ReleasedLease), releasedPools: z.array(ReleasedPool), spared: z.number().int() }),
    /** A lost host's blocks and endpoint leases removed, its pool references dropped (each also as block.released / address.released / pool.released). */
    'host.reclaimed': z.object({
      host: HostName,
      epoch: z.number().int(),
      by: HostName,
      blocks: z.array(ReclaimedBlock),
      addresses: z.array(ReclaimedAddress),
      pools: z.array(z.string()),
    }),
    /**
     * This host found its record reclaimed (it was away longer than its lease): it stands down, and
     * the addresses of containers it still runs are no longer guaranteed unique (they may be given
     * to containers elsewhere).
     */
    'host.fenced': z.object({ epoch: z.number().int(), reclaimedBy: HostName.nullable(), reclaimedAt: z.iso.datetime().nullable() }),
    /**
     * This host registered again after a reclaim, under a new epoch, joined its pools again and
     * leased again the addresses of its containers that nobody took meanwhile (`kept`). Each of
     * `lost` was given to a container elsewhere meanwhile: this host's container with it is moved
     * off it (endpoint.isolated, then plugin-api's container.readdressed).
     */
    'host.rejoined': z.object({ epoch: z.number().int(), pools: z.array(z.string()), kept: z.number().int(), lost: z.array(ReclaimedAddress) }),
  },
  netwire: {
    'service.started': Started,
    'network.created': z.object({ networkId: DockerId, bridge: z.string(), mtu: Mtu, subnets: z.array(CidrString), wireId: WireId, gatewayMac: MacString }),
    'network.deleted': z.object({ networkId: DockerId, bridge: z.string() }),
    'endpoint.created': z.object({ networkId: DockerId, endpointId: DockerId, hostVeth: z.string(), mac: MacString, address: IpWithPrefix.nullable() }),
    'endpoint.joined': z.object({ networkId: DockerId, endpointId: DockerId, sandboxKey: z.string() }),
    'endpoint.left': z.object({ networkId: DockerId, endpointId: DockerId }),
    'endpoint.deleted': z.object({ networkId: DockerId, endpointId: DockerId }),
    /** Ports published to an endpoint on this host (Docker cannot show them: `docker port` stays empty for a plugin's network). */
    'ports.published': z.object({ networkId: DockerId, endpointId: DockerId, ports: z.array(PublishedPort) }),
    'ports.unpublished': z.object({ networkId: DockerId, endpointId: DockerId, ports: z.array(PublishedPort) }),
    /** Endpoints and networks Docker did not have, removed by reconciliation (each also as endpoint.deleted / network.deleted). */
    'endpoints.reconciled': z.object({ removed: z.array(RemovedEndpoint), removedNetworks: z.array(RemovedNetwork), spared: z.number().int() }),
    'reconciled': z.object({
      removedLinks: z.array(z.string()),
      restoredNetworks: z.array(DockerId),
      forgottenEndpoints: z.array(DockerId),
      /** Bridges whose leftover firewall rules were removed. */
      removedFirewall: z.array(z.string()).optional(),
      /** Endpoints whose host veth was put back on its (restored) bridge. */
      reattachedEndpoints: z.array(DockerId).optional(),
      /** Published-port rules removed because their endpoint is gone (by host veth). */
      removedPorts: z.array(z.string()).optional(),
      /** Endpoints whose published ports were put back in the kernel. */
      restoredPorts: z.array(DockerId).optional(),
    }),
    /**
     * An endpoint taken off its network (host veth down and off the bridge; nothing removed): its
     * address is leased by another host (`takenBy`), given there while this host was away.
     */
    'endpoint.isolated': z.object({ networkId: DockerId, endpointId: DockerId, containerId: DockerId.nullable(), hostVeth: z.string(), address: IpString, takenBy: HostName }),
  },
  router: {
    'service.started': Started,
    'peer.connected': z.object({ peer: HostName, address: IpString, port: z.number().int() }),
    'peer.disconnected': z.object({ peer: HostName, reason: z.enum(['left', 'timeout', 'restarted']) }),
    /** The data path and MTU a peer's traffic takes; sent when either changes. */
    'peer.path': z.object({ peer: HostName, path: z.enum(['sleeve', 'fastpath']), mtu: Mtu, reason: z.string() }),
    'network.attached': z.object({ networkId: DockerId, wireId: WireId, tap: z.string() }),
    'network.detached': z.object({ networkId: DockerId, wireId: WireId, tap: z.string() }),
  },
} as const satisfies Record<ServiceName, Record<string, z.ZodType>>;

export type EventKindOf<S extends ServiceName> = keyof (typeof EventKinds)[S] & string;
export type EventDataOf<S extends ServiceName, K extends EventKindOf<S>> = z.output<(typeof EventKinds)[S][K] & z.ZodType>;

export const EventEnvelope = z.strictObject({
  v: z.literal(EVENT_SCHEMA_VERSION),
  seq: z.number().int().positive(),
  time: z.iso.datetime(),
  host: HostName,
  service: z.enum(['plugin-api', 'ipam', 'netwire', 'router']),
  kind: z.string(),
  data: z.unknown(),
});
export type EventEnvelope = z.output<typeof EventEnvelope>;

/** Validates an envelope and, when the kind is known, its data. */
export function parseEvent(raw: unknown): EventEnvelope {
  const env = EventEnvelope.parse(raw);
  const kinds = EventKinds[env.service] as Record<string, z.ZodType>;
  const schema = kinds[env.kind];
  if (!schema) throw new TypeError(`unknown event kind ${env.service}.${env.kind}`);
  return { ...env, data: schema.parse(env.data) };
}
