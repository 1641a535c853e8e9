import { randomBytes, randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { EventPublisher, serveRpc } from '@weave/bus';
import { ipamRpc } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { type CallMetrics, timedHandlers } from '@weave/metrics';
import { formatCidr } from '@weave/netaddr';
import type { HeldAddress, HeldPool } from './core/hosts';
import { parsePoolId } from './core/keys';
import type { IpamConfig, IpamDeps } from './deps';
import type { HostRoutes } from './host-routes';
import { HostLease, HostLeaseConfig } from './hosts';
import { Ipam } from './ipam';
import { LeaseCheck } from './leases-check';
import { Pools } from './pools';
import { Reclaimer } from './reclaimer';
import { rmpeerReply } from './rmpeer';
import { IpamStore, openIpamStore } from './store';
import { Views } from './views';

/** Renew every 10 s, reclaim after 5 min unrenewed: a reboot comes back in time, a host gone for good is not waited on long. */
export const DEFAULT_HOST_LEASE: HostLeaseConfig = { renewMs: 10_000, leaseMs: 300_000 };

export interface IpamServiceOptions {
  nc: NatsConnection;
  host: string;
  log: Logger;
  routes: HostRoutes;
  config: IpamConfig;
  replicas: number;
  /** How often this host renews its record, and how long a silent host keeps its blocks. */
  lease?: HostLeaseConfig;
  /** Defaults to the KV buckets on `nc`; tests may pass another store. `stop` closes it. */
  store?: IpamStore;
  now?: () => Date;
  /** Counts and times the RPC requests handled (see @weave/metrics). */
  rpcMetrics?: CallMetrics;
}

export interface RunningIpam {
  ipam: Ipam;
  lease: HostLease;
  stop: () => Promise<void>;
}

/** Opens the KV buckets, loads this host's pools and serves ipamRpc for this host. */
export async function startIpam(o: IpamServiceOptions): Promise<RunningIpam> {
  const now = o.now ?? (() => new Date());
  const events = new EventPublisher(o.nc, o.host, 'ipam', o.log, now);
  const store = o.store ?? (await openIpamStore(o.nc, o.replicas, o.log));
  const leaseConfig = o.lease ?? DEFAULT_HOST_LEASE;
  const base = { host: o.host, store, events, log: o.log, now };
  // The lease and the handlers need each other (fencing; the pools a returning host joins again):
  // the closures run only after everything below is built.
  const reclaimer = new Reclaimer({ ...base, leaseMs: leaseConfig.leaseMs, drain: (key) => drainer.drain(key) });
  const lease = new HostLease({ ...base, reclaimer, rejoin: (pools, released) => rejoin(ipam, pools, released, o.log) }, leaseConfig);
  const deps: IpamDeps = { ...base, routes: o.routes, config: o.config, membership: lease, newId: randomUUID, randomBytes };
  const drainer = new Pools(deps, new Views(deps));
  const ipam = new Ipam(deps);
  const leaseCheck = new LeaseCheck({ ...deps, lease: (poolId, address) => ipam.requestAddress({ poolId, address, kind: 'endpoint' }).then(() => undefined) });
  // Registered before anything is loaded: views and blocks are per epoch.
  await lease.start();
  o.log.info({ pools: await ipam.warm() }, 'loaded the pools this host holds');
  await probeRoutes(o.routes, o.log);
  const sub = serveRpc(o.nc, o.host, ipamRpc, timedHandlers({
    // Checked again in Addresses.request, under the pool's lock, for what queued before a reclaim.
    requestPool: async (r, ctx) => {
      await lease.whenServing(ctx.deadline);
      return ipam.requestPool(r, ctx);
    },
    releasePool: (r) => ipam.releasePool(r),
    requestAddress: async (r, ctx) => {
      await lease.whenServing(ctx.deadline);
      return ipam.requestAddress(r, ctx);
    },
    releaseAddress: (r) => ipam.releaseAddress(r),
    status: async () => ({ ...(await ipam.status()), hosts: await lease.status() }),
    reconcileHost: (r) => ipam.reconcileHost(r),
    rmpeer: async (r) => rmpeerReply(await reclaimer.reclaim(r.host, r.force)),
    checkLeases: (r) => leaseCheck.check(r),
    stickToMac: (r) => ipam.stickToMac(r),
  }, o.rpcMetrics), o.log);
  // Once the server has the subscription, callers on other connections can reach us.
  await o.nc.flush();
  events.publish('service.started', { version: '0.1.0', pid: process.pid });
  return {
    ipam,
    lease,
    stop: async () => {
      sub.unsubscribe();
      await lease.stop();
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

/**
 * After a reclaim took this host's pool references, it joins those pools again: its Docker still
 * has their networks. A pool torn down meanwhile (this host was its last holder) is created again,
 * and its gateway leased again: Docker does not ask for it twice, and the bridge has it. Then the
 * endpoint addresses the reclaim released, which its containers that still run use: each is
 * leased again under the new epoch if nobody took it meanwhile (create-if-absent, so never
 * twice). Returns those somebody took: their containers now share an address with another.
 */
async function rejoin(ipam: Ipam, pools: readonly HeldPool[], released: readonly HeldAddress[], log: Logger): Promise<HeldAddress[]> {
  for (const { poolId, gateway } of pools) {
    const spec = parsePoolId(poolId);
    const req = { addressSpace: '', pool: formatCidr(spec.pool), subPool: spec.subPool && formatCidr(spec.subPool), v6: spec.pool.family === 6, options: {} };
    try {
      await ipam.requestPool(req);
      if (gateway !== null) await ipam.requestAddress({ poolId, address: gateway, kind: 'gateway' });
    } catch (err) {
      log.error({ err, poolId }, `could not join pool ${poolId} again after a reclaim: ${describeError(err)}`);
    }
  }
  const lost: HeldAddress[] = [];
  for (const a of released) {
    try {
      await ipam.requestAddress({ poolId: a.poolId, address: a.address, kind: 'endpoint' });
    } catch (err) {
      log.warn({ err, ...a }, `address ${a.address} was not leased again after a reclaim: ${describeError(err)}`);
      lost.push(a);
    }
  }
  return lost;
}
