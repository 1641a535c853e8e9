import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { EventPublisher, serveRpc } from '@weave/bus';
import { ipamRpc } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import type { IpamConfig, IpamDeps } from './deps';
import type { HostRoutes } from './host-routes';
import { Ipam } from './ipam';
import { IpamStore, openIpamStore } from './store';

export interface IpamServiceOptions {
  nc: NatsConnection;
  host: string;
  log: Logger;
  routes: HostRoutes;
  config: IpamConfig;
  replicas: number;
  /** Defaults to the KV buckets on `nc`; tests may pass another store. `stop` closes it. */
  store?: IpamStore;
  now?: () => Date;
}

export interface RunningIpam {
  ipam: Ipam;
  stop: () => Promise<void>;
}

/** Opens the KV buckets, loads this host's pools and serves ipamRpc for this host. */
export async function startIpam(o: IpamServiceOptions): Promise<RunningIpam> {
  const now = o.now ?? (() => new Date());
  const events = new EventPublisher(o.nc, o.host, 'ipam', o.log, now);
  const store = o.store ?? (await openIpamStore(o.nc, o.replicas, o.log));
  const deps: IpamDeps = { host: o.host, store, routes: o.routes, events, log: o.log, config: o.config, now, newId: randomUUID };
  const ipam = new Ipam(deps);
  o.log.info({ pools: await ipam.warm() }, 'loaded the pools this host holds');
  await probeRoutes(o.routes, o.log);
  const sub = serveRpc(o.nc, o.host, ipamRpc, {
    requestPool: (r, ctx) => ipam.requestPool(r, ctx),
    releasePool: (r) => ipam.releasePool(r),
    requestAddress: (r, ctx) => ipam.requestAddress(r, ctx),
    releaseAddress: (r) => ipam.releaseAddress(r),
    status: () => ipam.status(),
    reconcileHost: (r) => ipam.reconcileHost(r),
  }, o.log);
  // Once the server has the subscription, callers on other connections can reach us.
  await o.nc.flush();
  events.publish('service.started', { version: '0.1.0', pid: process.pid });
  return {
    ipam,
    stop: async () => {
      sub.unsubscribe();
      await store.close();
    },
  };
}

/** Reading routes is needed only for default subnets: a failure is shown now, not fatal. */
async function probeRoutes(routes: HostRoutes, log: Logger): Promise<void> {
  try {
    log.info({ prefixes: (await routes.prefixes()).length }, 'read host routes');
  } catch (err) {
    log.error({ err }, `cannot read host routes, so networks without --subnet will fail: ${describeError(err)}`);
  }
}
