import type { CheckLeasesRequest, CheckLeasesResult, IsolateEndpointsRequest, Readdress } from '@weave/contracts';
import type { z } from 'zod';
import type { DockerNetworkView } from './plan';

/**
 * The decisions about containers whose address another host holds (see Readdresser); no I/O.
 * A host that comes back after a reclaim runs containers with addresses the reclaim released
 * and another host may have given out since: each such endpoint is taken off its network at
 * once, and its container disconnected and connected again the Docker way, so that it gets a
 * fresh address and Docker, ipam and netwire agree; one whose own --ip was taken stays
 * disconnected.
 */

/** One endpoint Docker has on this host whose address ipam says another host holds. */
export interface Displaced {
  networkId: string;
  network: string;
  /** Whether the network is our driver's (netwire has the endpoint) or only on our IPAM. */
  wired: boolean;
  endpointId: string;
  containerId: string | null;
  container: string;
  address: string;
  takenBy: string;
}

/** What Docker says of one container on one network (`GET /containers/<id>/json`). */
export interface ContainerEndpoint {
  /** Empty for a stopped container that is still configured on the network. */
  endpointId: string;
  address: string | null;
  /** The addresses the user chose (--ip, --ip6), if any. */
  ipamConfig: { IPv4Address?: string | undefined; IPv6Address?: string | undefined } | null;
  aliases: string[];
  links: string[];
  driverOpts: Record<string, string> | null;
}
export interface ContainerView {
  id: string;
  name: string;
  /** By network id. */
  networks: Record<string, ContainerEndpoint>;
}

/** Every endpoint address on the networks that use our IPAM, by subnet: ipam says which this host still holds. */
export function leaseQuery(driver: string, networks: readonly DockerNetworkView[]): z.input<typeof CheckLeasesRequest> {
  const pools = networks
    .filter((n) => n.ipamDriver === driver)
    .flatMap((n) => {
      const addresses = n.endpoints.flatMap((e) => e.addresses);
      return addresses.length === 0 ? [] : n.subnets.map((subnet) => ({ subnet, addresses }));
    });
  return { pools };
}

type Holding = z.output<typeof CheckLeasesResult>['addresses'][number];

/** The endpoints with an address another host holds; one entry per endpoint (its first such address). */
export function findDisplaced(driver: string, networks: readonly DockerNetworkView[], holdings: readonly Holding[]): Displaced[] {
  const taken = new Map(holdings.flatMap((h) => (h.state === 'taken' && h.by !== null ? [[`${h.subnet} ${h.address}`, h.by] as const] : [])));
  const out: Displaced[] = [];
  for (const n of networks.filter((n) => n.ipamDriver === driver)) {
    for (const e of n.endpoints) {
      const hit = e.addresses.flatMap((address) => n.subnets.flatMap((s) => (taken.has(`${s} ${address}`) ? [{ address, takenBy: taken.get(`${s} ${address}`)! }] : [])))[0];
      if (!hit) continue;
      out.push({ networkId: n.id, network: n.name, wired: n.driver === driver, endpointId: e.endpointId, containerId: e.containerId ?? null, container: e.container ?? '', ...hit });
    }
  }
  return out;
}

/** netwire's request: the endpoints it has (our driver's networks), to take off their network. */
export function isolateRequest(displaced: readonly Displaced[]): z.input<typeof IsolateEndpointsRequest> {
  return {
    endpoints: displaced.filter((d) => d.wired).map((d) => ({ networkId: d.networkId, endpointId: d.endpointId, containerId: d.containerId, address: d.address, takenBy: d.takenBy })),
  };
}

/**
 * The record of a move, from the container as Docker has it now; null when the container no
 * longer has that endpoint (it moved or left meanwhile: nothing to do). The container is
 * reconnected unless the address is one the user chose (--ip, --ip6): asking for it again would
 * fail, and any other address would not be what the user asked for.
 */
export function readdressOf(d: Displaced, c: ContainerView, now: Date): Readdress | null {
  const ep = c.networks[d.networkId];
  if (!ep || ep.endpointId !== d.endpointId) return null;
  const own = ep.ipamConfig?.IPv4Address === d.address || ep.ipamConfig?.IPv6Address === d.address;
  // Docker adds the short container id as an alias by itself; given back, it would be listed twice.
  const aliases = ep.aliases.filter((a) => a !== c.id.slice(0, 12));
  const endpointConfig = {
    ...(ep.ipamConfig ? { IPAMConfig: ep.ipamConfig } : {}),
    ...(aliases.length > 0 ? { Aliases: aliases } : {}),
    ...(ep.links.length > 0 ? { Links: ep.links } : {}),
    ...(ep.driverOpts ? { DriverOpts: ep.driverOpts } : {}),
  };
  return {
    containerId: c.id,
    container: c.name,
    networkId: d.networkId,
    network: d.network,
    endpointId: d.endpointId,
    address: d.address,
    takenBy: d.takenBy,
    reconnect: !own,
    endpointConfig,
    since: now.toISOString(),
  };
}

/**
 * What a recorded move needs next, from the container as Docker has it now. Run again after a
 * crash at any point, it finishes the move: a container still on the displaced endpoint is
 * disconnected; one off the network is connected again (or left so, for its own --ip); one on
 * the network under another endpoint has moved (we, or its user, connected it again); one that
 * is gone needs nothing.
 */
export type Step = 'disconnect' | 'connect' | 'stay-disconnected' | 'forget';

export function nextStep(r: Readdress, c: ContainerView | null): Step {
  if (!c) return 'forget';
  const ep = c.networks[r.networkId];
  if (!ep) return r.reconnect ? 'connect' : 'stay-disconnected';
  return ep.endpointId === r.endpointId ? 'disconnect' : 'forget';
}

/** Why, in words a person acts on: for the event, the log and `weave status`. */
export function reasonOf(r: Readdress): string {
  const why = `${r.address} is leased by ${r.takenBy} (given there while this host was away)`;
  if (r.reconnect) return `${why}: reconnected to ${r.network} with a fresh address`;
  return `${why}, and it is the address this container asked for (--ip): it stays disconnected from ${r.network}; connect it again with another --ip or none (docker network connect ${r.network} ${r.container || r.containerId.slice(0, 12)})`;
}
