import { z } from 'zod';
import { PortRequest, PublishedPort } from './ports';
import { CidrString, DockerId, HostName, IpString, IpWithPrefix, MacString, Mtu, WireId } from './primitives';
import { CheckLeasesRequest, CheckLeasesResult, EndpointIsolation, IsolateEndpointsRequest, IsolateEndpointsResult, Readdress, ReaddressReport } from './readdress';
import { StickToMacRequest, StickToMacResult } from './sticky';

/**
 * Request/reply methods, one object per service. Subject: weave.rpc.<host>.<service>.<method>.
 * Replies are `{ok:true, result}` or `{ok:false, error:{code, message}}`; both sides validate.
 */
export interface RpcMethod<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  readonly req: Req;
  readonly res: Res;
}
export interface RpcService {
  readonly service: ServiceName;
  readonly methods: Readonly<Record<string, RpcMethod>>;
}

export const ServiceNames = ['plugin-api', 'ipam', 'netwire', 'router'] as const;
export type ServiceName = (typeof ServiceNames)[number];

const Empty = z.strictObject({});
const Labels = z.record(z.string(), z.string());

export const AddressKind = z.enum(['endpoint', 'gateway', 'aux']);

export const PoolStatus = z.object({
  poolId: z.string(),
  pool: CidrString,
  subPool: CidrString.nullable(),
  gateway: IpString.nullable(),
  holders: z.record(HostName, z.number().int()),
  blocks: z.array(z.object({ block: CidrString, owner: HostName, used: z.number().int(), size: z.number().int() })),
});

/**
 * Reconciliation against Docker, the authority on which endpoints exist on a host. plugin-api
 * lists its Docker's weave networks, starting at `listedAt`, and asks ipam and netwire to drop
 * what Docker does not have. `olderThan` (listedAt less a grace period) protects what is in
 * flight: Docker records an endpoint only after RequestAddress and CreateEndpoint have answered,
 * so a lease or endpoint record made shortly before the listing may be missing from it and still
 * be about to exist. Only what was made before `olderThan` is dropped.
 */
export const ReconcileHostRequest = z.strictObject({
  /**
   * The subnets of every network on this host that uses weave's IPAM, each with every address
   * Docker has in it (endpoints, gateway, aux). A pool this host holds that is not here lost its
   * network while ipam was down (a missed ReleasePool): its reference goes too.
   */
  pools: z.array(z.strictObject({ subnet: CidrString, keep: z.array(IpString).max(65_536) })).max(4096),
  olderThan: z.iso.datetime(),
});
/**
 * This host's Docker networks on weave's IPAM as plugin-api listed them while forwarding a
 * RequestPool or ReleasePool, which name no network. Against it ipam tells a second network
 * asking for a subnet this host uses (Docker lists the first) from a create that is asked again
 * after a lost reply or a crash (Docker lists no network with it: this host's reference is a
 * leftover, taken over rather than refused), and a removal's or a rollback's ReleasePool (Docker
 * leaves a network it is removing out of its list) from a stray one that would take the
 * reference of a network Docker still has. Absent or null when Docker could not be asked in time:
 * ipam then decides as it did without it.
 */
export const DockerPoolView = z.strictObject({
  networks: z
    .array(z.strictObject({ id: DockerId, name: z.string().min(1).max(1024), subnets: z.array(CidrString).max(64) }))
    .max(4096),
  /** As for ReconcileHostRequest: a reference taken after this may belong to a network create still in flight. */
  olderThan: z.iso.datetime(),
});
export type DockerPoolView = z.output<typeof DockerPoolView>;

export const ReleasedLease = z.strictObject({ poolId: z.string(), address: IpString, leasedAt: z.iso.datetime() });
export const ReleasedPool = z.strictObject({ poolId: z.string(), pool: CidrString });
export const ReconcileHostResult = z.strictObject({
  released: z.array(ReleasedLease),
  releasedPools: z.array(ReleasedPool),
  /** Leases and pool references Docker does not have, kept because they are younger than `olderThan` (perhaps in flight). */
  spared: z.number().int().min(0),
});

export const ReconcileEndpointsRequest = z.strictObject({
  /**
   * Every weave network Docker has on this host, with every endpoint Docker has on it. A network
   * netwire has that is not here is gone from Docker (removed while netwire was down): it goes
   * too, with its endpoints, bridge and rules, under the same `olderThan`.
   */
  networks: z.array(z.strictObject({ networkId: DockerId, keep: z.array(DockerId).max(65_536) })).max(4096),
  olderThan: z.iso.datetime(),
});
export const RemovedEndpoint = z.strictObject({ networkId: DockerId, endpointId: DockerId, hostVeth: z.string() });
export const RemovedNetwork = z.strictObject({ networkId: DockerId, bridge: z.string() });
export const ReconcileEndpointsResult = z.strictObject({
  removed: z.array(RemovedEndpoint),
  removedNetworks: z.array(RemovedNetwork),
  /** Endpoints and networks Docker does not have, kept because they are younger than `olderThan`. */
  spared: z.number().int().min(0),
});

/**
 * An ipam host's record (see the lost-host section of the README): live hosts renew it; one whose
 * lease ran out is reclaimed by a survivor, and registers again under a new epoch when it returns.
 */
export const HostStatus = z.discriminatedUnion('state', [
  z.object({
    host: HostName,
    state: z.literal('live'),
    epoch: z.number().int(),
    renewedAt: z.iso.datetime(),
    /** Until a survivor reclaims it, as the answering host's clock has it; negative when overdue. */
    leaseLeftMs: z.number(),
  }),
  z.object({
    host: HostName,
    state: z.literal('reclaimed'),
    epoch: z.number().int(),
    renewedAt: z.iso.datetime(),
    reclaimedBy: HostName,
    reclaimedAt: z.iso.datetime(),
    /** False while the reclaimer is still removing the host's blocks and leases. */
    done: z.boolean(),
  }),
]);

export const ReclaimedBlock = z.strictObject({ poolId: z.string(), block: CidrString });
export const ReclaimedAddress = z.strictObject({ poolId: z.string(), address: IpString });

export const RmpeerResult = z.discriminatedUnion('outcome', [
  z.strictObject({
    outcome: z.literal('reclaimed'),
    host: HostName,
    /** The epoch the host had; its keys of that epoch and before are gone. */
    epoch: z.number().int(),
    blocks: z.array(ReclaimedBlock),
    addresses: z.array(ReclaimedAddress),
    /** Pools whose reference the host lost. */
    pools: z.array(z.string()),
  }),
  /** Someone reclaimed it first (another rmpeer, or a survivor after the lease). */
  z.strictObject({ outcome: z.literal('already'), host: HostName, by: HostName, at: z.iso.datetime() }),
]);

export const ipamRpc = {
  service: 'ipam',
  methods: {
    requestPool: {
      req: z.strictObject({
        addressSpace: z.string(),
        pool: CidrString.nullable(),
        subPool: CidrString.nullable(),
        v6: z.boolean(),
        options: Labels,
        docker: DockerPoolView.nullable().optional(),
      }),
      res: z.strictObject({ poolId: z.string(), pool: CidrString, data: Labels }),
    },
    releasePool: { req: z.strictObject({ poolId: z.string().min(1), docker: DockerPoolView.nullable().optional() }), res: Empty },
    requestAddress: {
      req: z.strictObject({
        poolId: z.string().min(1),
        address: IpString.nullable(),
        kind: AddressKind,
        owner: z.string().max(200).optional(),
        /** The endpoint's MAC as Docker sent it: a dynamic request gets the address kept for it, if any (see StickyLease). */
        mac: MacString.optional(),
      }),
      res: z.strictObject({ address: IpWithPrefix }),
    },
    releaseAddress: { req: z.strictObject({ poolId: z.string().min(1), address: IpString }), res: Empty },
    status: { req: Empty, res: z.strictObject({ pools: z.array(PoolStatus), hosts: z.array(HostStatus) }) },
    /**
     * `weave rmpeer`: reclaims a lost host now rather than after its lease. Refuses the host it
     * runs on, and a live host unless `force`. Safe on several hosts at once: one reclaims, the
     * others answer `already`.
     */
    rmpeer: { req: z.strictObject({ host: HostName, force: z.boolean() }), res: RmpeerResult },
    /**
     * Releases this host's endpoint leases that Docker no longer has (see ReconcileHostRequest);
     * plugin-api calls it with Docker's view of this host.
     */
    reconcileHost: { req: ReconcileHostRequest, res: ReconcileHostResult },
    /** Which endpoint addresses Docker has here this host still holds (see CheckLeasesRequest). */
    checkLeases: { req: CheckLeasesRequest, res: CheckLeasesResult },
    /** CreateEndpoint with the container's own MAC: the address sticks to it (see StickyLease). */
    stickToMac: { req: StickToMacRequest, res: StickToMacResult },
  },
} as const satisfies RpcService;

export const NetworkSpec = z.strictObject({
  networkId: DockerId,
  ipv4: z.array(z.strictObject({ pool: CidrString, gateway: IpWithPrefix.nullable() })).min(1),
  ipv6: z.array(z.strictObject({ pool: CidrString, gateway: IpWithPrefix.nullable() })),
  internal: z.boolean(),
  mtu: Mtu.nullable(),
  options: Labels,
  /**
   * `-o weave.multicast=true`: multicast beyond the link (IPv4 outside 224.0.0.0/24, IPv6
   * outside ff02::/16) crosses hosts. Absent (specs from before the option) or false: it stays
   * on its host; broadcast and link-local multicast always cross.
   */
  multicast: z.boolean().optional(),
});
export type NetworkSpec = z.output<typeof NetworkSpec>;

const EndpointRef = z.strictObject({ networkId: DockerId, endpointId: DockerId });

export const EndpointStatus = z.object({
  networkId: DockerId,
  endpointId: DockerId,
  address: IpWithPrefix.nullable(),
  addressV6: IpWithPrefix.nullable(),
  mac: MacString,
  hostVeth: z.string(),
  present: z.boolean(),
  /** The ports published to it on this host; absent from a netwire that predates publishing. */
  ports: z.array(PublishedPort).optional(),
  /** Set when netwire took the endpoint off its network: another host holds its address. */
  isolated: EndpointIsolation.nullable().optional(),
});
export const NetworkStatus = z.object({
  networkId: DockerId,
  bridge: z.string(),
  /** Mesh-wide: what the router carries this network's frames under, and the gateway's MAC on every host. */
  wireId: WireId,
  gatewayMac: MacString,
  mtu: Mtu,
  internal: z.boolean(),
  subnets: z.array(CidrString),
  endpoints: z.number().int(),
  /** Carries multicast beyond the link to other hosts (NetworkSpec.multicast); absent from an older netwire: no. */
  multicast: z.boolean().optional(),
});

export const netwireRpc = {
  service: 'netwire',
  methods: {
    createNetwork: { req: NetworkSpec, res: z.strictObject({ bridge: z.string(), mtu: Mtu }) },
    deleteNetwork: { req: z.strictObject({ networkId: DockerId }), res: Empty },
    createEndpoint: {
      req: z.strictObject({
        networkId: DockerId,
        endpointId: DockerId,
        address: IpWithPrefix.nullable(),
        addressV6: IpWithPrefix.nullable(),
        mac: MacString.nullable(),
      }),
      /** `mac` is set only when the caller gave none: Docker refuses a driver that changes a field it set. */
      res: z.strictObject({ mac: MacString.nullable() }),
    },
    join: {
      req: z.strictObject({ networkId: DockerId, endpointId: DockerId, sandboxKey: z.string().min(1) }),
      res: z.strictObject({
        srcName: z.string().max(15),
        gateway: IpString.nullable(),
        gatewayV6: IpString.nullable(),
        /** An internal network publishes no ports: plugin-api refuses a container that asks it to. */
        internal: z.boolean(),
      }),
    },
    leave: { req: EndpointRef, res: Empty },
    deleteEndpoint: { req: EndpointRef, res: Empty },
    /**
     * Docker's ProgramExternalConnectivity: publishes the ports on this host (replacing what the
     * endpoint had), all or none. Refused on an internal network, and for a port someone else
     * publishes or listens on; answers with the host ports chosen.
     */
    publishPorts: {
      req: z.strictObject({ networkId: DockerId, endpointId: DockerId, ports: z.array(PortRequest).max(1024) }),
      res: z.strictObject({ ports: z.array(PublishedPort) }),
    },
    /** Docker's RevokeExternalConnectivity: the endpoint's ports are published no more. */
    unpublishPorts: { req: EndpointRef, res: Empty },
    status: {
      req: Empty,
      res: z.strictObject({ networks: z.array(NetworkStatus), endpoints: z.array(EndpointStatus) }),
    },
    /** Removes the endpoints (record and veth) and networks Docker does not have; see ReconcileEndpointsRequest. */
    reconcileEndpoints: { req: ReconcileEndpointsRequest, res: ReconcileEndpointsResult },
    /** Takes endpoints whose address another host holds off their network, at once (see DisplacedEndpoint). */
    isolateEndpoints: { req: IsolateEndpointsRequest, res: IsolateEndpointsResult },
  },
} as const satisfies RpcService;

/** One reconciliation pass of plugin-api against Docker, and what the services dropped in it. */
export const DockerReconcileReport = z.strictObject({
  listedAt: z.iso.datetime(),
  olderThan: z.iso.datetime(),
  networks: z.number().int().min(0),
  endpoints: z.number().int().min(0),
  /** Null when that service could not be asked (see `problems`). */
  ipam: ReconcileHostResult.nullable(),
  netwire: ReconcileEndpointsResult.nullable(),
  problems: z.array(z.string()),
  /** Containers whose address another host holds (see Readdress), found and moved in this pass. */
  readdress: ReaddressReport.optional(),
});

export const pluginApiRpc = {
  service: 'plugin-api',
  methods: {
    /** Runs a reconciliation pass against Docker now (one already running is followed by one more) and reports it. */
    reconcile: { req: Empty, res: DockerReconcileReport },
    /** The containers plugin-api is moving off an address another host holds, or left disconnected (see Readdress). */
    status: { req: Empty, res: z.strictObject({ readdress: z.array(Readdress) }) },
  },
} as const satisfies RpcService;

/** Error codes carried in `{ok:false}` replies; each maps to one error class on the calling side. */
export const ErrorCodes = ['invalid', 'not_found', 'conflict', 'exhausted', 'unavailable', 'internal'] as const;
export type ErrorCode = (typeof ErrorCodes)[number];
export const RpcErrorBody = z.strictObject({ code: z.enum(ErrorCodes), message: z.string() });

export const RpcReply = z.discriminatedUnion('ok', [
  z.strictObject({ ok: z.literal(true), result: z.unknown() }),
  z.strictObject({ ok: z.literal(false), error: RpcErrorBody }),
]);

/**
 * Headers of an RPC request. `Weave-Deadline`: when the caller stops waiting, in milliseconds
 * since the epoch. Caller and service are on one host (the subject names it), so one clock serves
 * both; a service can tell that its reply will reach nobody and undo what the request did.
 */
export const RpcHeaders = { deadline: 'Weave-Deadline' } as const;
export const DeadlineHeader = z.string().regex(/^\d{1,15}$/, 'expected whole milliseconds since the epoch').transform(Number);

export type ReqOf<S extends RpcService, M extends keyof S['methods']> = z.input<S['methods'][M]['req']>;
export type ResOf<S extends RpcService, M extends keyof S['methods']> = z.output<S['methods'][M]['res']>;

/**
 * The mesh-wide network catalogue: one entry per weave network name, kept by every host's
 * plugin-api, which makes each host's Docker agree with it. A removed network leaves a tombstone,
 * so a host that was away learns to remove its copy instead of publishing it again.
 */
export const CatalogueSubnet = z.strictObject({ subnet: CidrString, ipRange: CidrString.nullable(), gateway: IpString.nullable() });
export const CatalogueEntry = z.discriminatedUnion('state', [
  z.strictObject({
    state: z.literal('active'),
    name: z.string().min(1),
    subnets: z.array(CatalogueSubnet).min(1),
    ipv6: z.boolean(),
    internal: z.boolean(),
    options: Labels,
    labels: Labels,
    createdBy: HostName,
    createdAt: z.iso.datetime(),
  }),
  z.strictObject({ state: z.literal('removed'), name: z.string().min(1), removedBy: HostName, removedAt: z.iso.datetime() }),
]);
export type CatalogueEntry = z.output<typeof CatalogueEntry>;

/**
 * Router presence: each router announces itself on weave.presence.<host> every heartbeat, and
 * once more with `leaving` when it stops. `boot` changes at every start, so a peer that restarted
 * between two heartbeats is still seen as new.
 */
export const Presence = z.strictObject({
  host: HostName,
  boot: z.string().regex(/^[0-9a-f]{16}$/),
  address: IpString,
  port: z.number().int().min(1).max(65535),
  leaving: z.boolean(),
});
export type Presence = z.output<typeof Presence>;

/** A 64-bit counter, as a decimal string (JSON numbers lose precision past 2^53). */
const Counter64 = z.string().regex(/^\d+$/);

/** What the sleeve carried to and from one peer (decimal strings: 64-bit counters). */
export const PeerTraffic = z.object({ bytesTo: Counter64, bytesFrom: Counter64, framesTo: Counter64, framesFrom: Counter64 });
export type PeerTraffic = z.output<typeof PeerTraffic>;

export const PeerStatus = z.object({
  host: HostName,
  address: IpString,
  port: z.number().int(),
  state: z.enum(['connected', 'lost']),
  lastSeen: z.iso.datetime(),
  since: z.iso.datetime(),
  /**
   * The data path its traffic takes and the MTU a frame can have on it; null until known.
   * `fastpath` is the kernel VXLAN path, for a router that chooses it.
   */
  path: z.enum(['sleeve', 'fastpath']).nullable(),
  mtu: Mtu.nullable(),
  /** Why the peer is on that path ("VXLAN replies arrive", "no VXLAN reply for 3 s: …"). */
  pathReason: z.string().nullable().optional(),
  /**
   * Where encryption stands with the peer, in an encrypted mesh (null in a plain one): a session,
   * still handshaking, or refused because the peer has another password, none, or has one when
   * this host has none.
   */
  encryption: z.enum(['established', 'handshaking', 'wrongPassword', 'plaintextPeer', 'encryptedPeer', 'off']).nullable().optional(),
  /** What this host has sent to and received from the peer, for a router that counts per peer. */
  traffic: PeerTraffic.partial().optional(),
});

export const RouterNetworkStatus = z.object({
  networkId: DockerId,
  wireId: WireId,
  tap: z.string(),
  bridge: z.string(),
  attached: z.boolean(),
  /** The network's kernel VXLAN device and id; absent for a network that stays on the sleeve. */
  vxlan: z.object({ device: z.string(), vni: z.number().int().min(0).max(0xffffff), up: z.boolean() }).optional(),
  /** Multicast beyond the link crosses to other hosts (`-o weave.multicast=true`); absent from an older router: no. */
  multicast: z.boolean().optional(),
});

/** The sleeve's counters (64-bit, so decimal strings). */
export const SleeveCounters = z.record(z.string(), Counter64);

export const routerRpc = {
  service: 'router',
  methods: {
    status: {
      req: Empty,
      res: z.strictObject({
        host: HostName,
        address: IpString,
        port: z.number().int(),
        peers: z.array(PeerStatus),
        networks: z.array(RouterNetworkStatus),
        sleeve: SleeveCounters,
      }),
    },
  },
} as const satisfies RpcService;
