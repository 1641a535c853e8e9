import type { NatsConnection } from '@nats-io/nats-core';
import { EventPublisher, serveRpc } from '@weave/bus';
import { ipamRpc } from '@weave/contracts';
import type { Logger } from '@weave/log';
import type { Cidr } from '@weave/netaddr';
import type { HostRoutes } from './host-routes';
import { Ipam } from './ipam';
import { openIpamStore } from './store';

export interface IpamServiceOptions {
  nc: NatsConnection;
  host: string;
  log: Logger;
  routes: HostRoutes;
  defaultRange: Cidr;
  defaultPrefix: number;
  blockSize: number;
  replicas: number;
}

/** Opens the KV buckets and serves ipamRpc for this host; resolves to a stop function. */
export async function startIpam(o: IpamServiceOptions): Promise<{ ipam: Ipam; stop: () => Promise<void> }> {
  const store = await openIpamStore(o.nc, o.replicas);
  const events = new EventPublisher(o.nc, o.host, 'ipam', o.log);
  const ipam = new Ipam({ host: o.host, store, routes: o.routes, events, log: o.log, defaultRange: o.defaultRange, defaultPrefix: o.defaultPrefix, blockSize: o.blockSize });
  const sub = serveRpc(
    o.nc,
    o.host,
    ipamRpc,
    {
      requestPool: (r) => ipam.requestPool(r),
      releasePool: (r) => ipam.releasePool(r),
      requestAddress: (r) => ipam.requestAddress(r),
      releaseAddress: (r) => ipam.releaseAddress(r),
      status: () => ipam.status(),
    },
    o.log,
  );
  events.publish('service.started', { version: '0.1.0', pid: process.pid });
  return { ipam, stop: async () => sub.unsubscribe() };
}
