import { z } from 'zod';
import { CidrString, DockerId, HostName, IpString } from './primitives';

/**
 * A host that comes back after a reclaim (README, "Lost hosts") may find addresses of its running
 * containers leased by other hosts meanwhile. Those endpoints are taken off their network at once
 * (netwire's isolateEndpoints) and their containers get fresh addresses the Docker way (plugin-api
 * disconnects and connects them again); ipam tells which addresses this host still holds.
 */

/**
 * ipam's checkLeases: the endpoint addresses Docker has on this host, by subnet. A free one (no
 * lease at all: a rejoin that stopped half-way) is leased again for this host when it can be.
 */
export const CheckLeasesRequest = z.strictObject({
  pools: z.array(z.strictObject({ subnet: CidrString, addresses: z.array(IpString).max(65_536) })).max(4096),
});
export const LeaseHolding = z.strictObject({
  subnet: CidrString,
  address: IpString,
  /**
   * `held`: leased by this host (`adopted`: just now, it was free); `taken`: leased by host `by`
   * (for another container, or as a gateway or aux address), so this host must stop using it;
   * `free`: not leased, and not leased again now (this host is fenced, or does not hold the pool).
   */
  state: z.enum(['held', 'taken', 'free']),
  by: HostName.nullable(),
  adopted: z.boolean(),
});
export const CheckLeasesResult = z.strictObject({ addresses: z.array(LeaseHolding) });

/** One endpoint whose address another host holds, as plugin-api asks netwire to isolate it. */
export const DisplacedEndpoint = z.strictObject({
  networkId: DockerId,
  endpointId: DockerId,
  /** For the log and the event; null for an endpoint Docker lists without a container. */
  containerId: DockerId.nullable(),
  address: IpString,
  takenBy: HostName,
});
export const IsolateEndpointsRequest = z.strictObject({ endpoints: z.array(DisplacedEndpoint).max(65_536) });
export const IsolateEndpointsResult = z.strictObject({
  /** Taken off their network by this call. */
  isolated: z.array(z.strictObject({ networkId: DockerId, endpointId: DockerId, hostVeth: z.string() })),
  /** Isolated before (a repeated call): checked again in the kernel, nothing new. */
  already: z.number().int().min(0),
  /** Endpoints netwire has no record of (removed meanwhile). */
  unknown: z.array(DockerId),
});

/** How an endpoint netwire took off its network stands, in netwire's status. */
export const EndpointIsolation = z.strictObject({
  at: z.iso.datetime(),
  address: IpString,
  takenBy: HostName,
  containerId: DockerId.nullable(),
});

/**
 * plugin-api's record of a container it moves off an address another host holds: written before
 * the container is disconnected, so a crash half-way is finished at the next pass. `reconnect`
 * false: the address was the user's own (`--ip`), so the container stays disconnected, and the
 * record stays (a `weave status` problem) until the container is removed or connected again.
 */
export const Readdress = z.strictObject({
  containerId: DockerId,
  container: z.string(),
  networkId: DockerId,
  network: z.string(),
  /** The endpoint that had the address; a container on the network under another endpoint has moved. */
  endpointId: DockerId,
  address: IpString,
  takenBy: HostName,
  reconnect: z.boolean(),
  /** What `docker network connect` is given again (aliases, links, driver options, --ip for the other family). */
  endpointConfig: z.record(z.string(), z.unknown()),
  since: z.iso.datetime(),
});
export type Readdress = z.output<typeof Readdress>;

/** What one pass of plugin-api's reconciliation did about such containers. */
export const ReaddressReport = z.strictObject({
  /** Endpoints Docker has here whose address another host holds. */
  displaced: z.number().int().min(0),
  /** Of those, taken off their network by netwire in this pass (not before). */
  isolated: z.number().int().min(0),
  reconnected: z.number().int().min(0),
  /** Left disconnected: their own --ip is another host's. */
  disconnected: z.number().int().min(0),
  /** Records still open after the pass: containers left disconnected, moves to finish at the next pass. */
  pending: z.number().int().min(0),
});
