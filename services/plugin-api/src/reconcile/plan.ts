import type { ReqOf } from '@weave/contracts';
import { ipamRpc, netwireRpc } from '@weave/contracts';

/** One weave network as this host's Docker has it: the authority on which endpoints exist here. */
export interface DockerNetworkView {
  id: string;
  name: string;
  /** The network driver, and the IPAM driver: either may be ours. */
  driver: string;
  ipamDriver: string | null;
  subnets: string[];
  /** Gateways and aux addresses: leased through us, but no endpoint's. */
  reserved: string[];
  endpoints: DockerEndpointView[];
}

export interface DockerEndpointView {
  endpointId: string;
  addresses: string[];
  /** The container it belongs to (null: an endpoint without one), and its name; absent where nobody needs them. */
  containerId?: string | null;
  container?: string;
}

/** What reconciliation reads of Docker, and nothing more. */
export interface DockerEndpoints {
  /** This host's networks of `driver`, or with `driver` as their IPAM driver, with their endpoints. */
  endpoints(driver: string): Promise<DockerNetworkView[]>;
}

export interface ReconcileRequests {
  ipam: ReqOf<typeof ipamRpc, 'reconcileHost'>;
  netwire: ReqOf<typeof netwireRpc, 'reconcileEndpoints'>;
  endpoints: number;
}

/**
 * What ipam and netwire are asked to drop, from Docker's view of this host; no I/O.
 *
 * The in-flight race. Docker allocates an endpoint in steps: RequestAddress (ipam writes a lease),
 * CreateEndpoint (netwire writes a record and a veth), and only then stores the endpoint, which
 * is when `GET /networks/<id>` starts listing it. A lease or record made just before the listing
 * can therefore be missing from it and still be about to exist; taking it would hand a live
 * container's address to the next one. So only what was made before `olderThan` may go, and
 * `olderThan` is the moment the listing *began* less the grace period: a network inspected later
 * in the pass gets the same, earlier bound, which errs towards keeping. The grace period must
 * exceed the longest such a step can take (see reconcileSettings): then anything older than it
 * that Docker did not list is not in flight but gone. The services decide by the lease's or
 * record's own time, on the same host's clock, so a pass needs no memory of earlier passes.
 *
 * Also kept: everything in a network Docker lists (its endpoints' addresses, gateways, aux).
 * ipam hears of every network that uses our IPAM, whatever its network driver (a pool no such
 * network has is a reference a missed ReleasePool left); netwire of the networks of our driver
 * only, the ones it makes bridges for.
 */
export function planReconcile(driver: string, networks: readonly DockerNetworkView[], listedAt: Date, graceMs: number): ReconcileRequests {
  const olderThan = new Date(listedAt.getTime() - graceMs).toISOString();
  const pools = networks
    .filter((n) => n.ipamDriver === driver)
    .flatMap((n) => {
      const keep = [...n.reserved, ...n.endpoints.flatMap((e) => e.addresses)];
      return n.subnets.map((subnet) => ({ subnet, keep }));
    });
  const wired = networks.filter((n) => n.driver === driver);
  return {
    ipam: { pools, olderThan },
    netwire: { networks: wired.map((n) => ({ networkId: n.id, keep: n.endpoints.map((e) => e.endpointId) })), olderThan },
    endpoints: networks.reduce((sum, n) => sum + n.endpoints.length, 0),
  };
}
