import { DockerPoolView } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import type { IpamNetwork } from './catalogue/docker-engine';

/** What the lookup reads of Docker: its networks on our IPAM with their subnets. */
export interface DockerIpamNetworks {
  ipamNetworks(driver: string, timeoutMs: number): Promise<IpamNetwork[]>;
}

export interface DockerPoolViewOptions {
  docker: DockerIpamNetworks;
  /** Our driver name, which is also the IPAM driver name. */
  driver: string;
  /** Reconciliation's grace (see reconcileSettings): how long a network create can be in flight. */
  graceMs: number;
  log: Logger;
  /** Docker answers a listing in milliseconds; one that takes longer is not waited for. */
  timeoutMs?: number;
  now?: () => Date;
}

export const DOCKER_LOOKUP_TIMEOUT_MS = 2000;

/**
 * Docker's RequestPool and ReleasePool name no network; ipam decides who a pool belongs to from
 * Docker's list of this host's networks, which this reads for each such call (see DockerPoolView
 * and ipam's heldVerdict). `olderThan` is the listing's start less the grace, as in reconciliation.
 * Null when Docker does not answer in time, or with something that does not parse: ipam then
 * decides as it did without the list (refuses a subnet held here, releases as asked).
 */
export function dockerPoolView(o: DockerPoolViewOptions): () => Promise<DockerPoolView | null> {
  const now = o.now ?? (() => new Date());
  return async () => {
    const listedAt = now();
    try {
      const networks = await o.docker.ipamNetworks(o.driver, o.timeoutMs ?? DOCKER_LOOKUP_TIMEOUT_MS);
      return DockerPoolView.parse({ networks, olderThan: new Date(listedAt.getTime() - o.graceMs).toISOString() });
    } catch (err) {
      o.log.warn({ err }, `could not list this host's networks in Docker for an IPAM pool call, so ipam decides without them: ${describeError(err)}`);
      return null;
    }
  };
}
