import type { EventPublisher } from '@weave/bus';
import type { Logger } from '@weave/log';
import type { Cidr } from '@weave/netaddr';
import type { HostRoutes } from './host-routes';
import type { IpamStore } from './store';

/** What the service is configured with (from the environment, see env.ts). */
export interface IpamConfig {
  /** Where subnets come from when the user names none. */
  defaultRange: Cidr;
  defaultPrefix: number;
  /** Addresses per block a host claims at a time (a power of two), for pools created here. */
  blockSize: number;
  /** How long an address Docker released stays kept for its container's own MAC (see core/sticky.ts); 0 or absent: not at all. */
  keepMs?: number;
}

/**
 * This host's standing in the mesh (see hosts.ts): the epoch its blocks and leases carry, and
 * whether it may allocate at all. Checked before every allocation, from memory and the hosts
 * mirror, so it costs no round trip.
 */
export interface Membership {
  epoch(): number;
  /** Throws UnavailableError while this host must not allocate (reclaimed, or unable to renew for a whole lease). */
  assertLive(): void;
}

/** A host that is always live at epoch 1: for tests of the handlers alone. */
export const ALWAYS_LIVE: Membership = { epoch: () => 1, assertLive: () => undefined };

export type IpamEvents = Pick<EventPublisher<'ipam'>, 'publish'>;

/** Everything the handlers touch outside themselves, injected so tests can replace each part. */
export interface IpamDeps {
  host: string;
  store: IpamStore;
  routes: HostRoutes;
  events: IpamEvents;
  log: Logger;
  config: IpamConfig;
  membership: Membership;
  now: () => Date;
  /** A fresh unique id, for pool incarnations. */
  newId: () => string;
  /** `n` cryptographically random bytes, for the mesh's ULA global id (see core/ula.ts). */
  randomBytes: (n: number) => Uint8Array;
}
