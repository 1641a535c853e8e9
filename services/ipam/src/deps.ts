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
}

export type IpamEvents = Pick<EventPublisher<'ipam'>, 'publish'>;

/** Everything the handlers touch outside themselves, injected so tests can replace each part. */
export interface IpamDeps {
  host: string;
  store: IpamStore;
  routes: HostRoutes;
  events: IpamEvents;
  log: Logger;
  config: IpamConfig;
  now: () => Date;
  /** A fresh unique id, for pool incarnations. */
  newId: () => string;
}
