import type { NatsConnection } from '@nats-io/nats-core';
import { ensureEventHistory, EventPublisher, openBucket, RpcHandlers, serveRpc } from '@weave/bus';
import { Buckets, netwireRpc } from '@weave/contracts';
import type { Logger } from '@weave/log';
import { type CallMetrics, timedHandlers } from '@weave/metrics';
import type { Kernel } from './kernel';
import { Netwire, NetwireEvents } from './netwire';
import { startWeaveDns, WeaveDns } from './dns/weave-dns';
import type { Upstreams } from './dns/upstreams';
import { PeerAddresses } from './peer-addresses';
import { KvStore } from './store';

export const VERSION = '0.1.0';

export interface NetwireServiceOptions {
  nc: NatsConnection;
  host: string;
  kernel: Kernel;
  log: Logger;
  mtu: number | null;
  mtuOverhead?: number;
  /** Copies of the state bucket in a NATS cluster (WEAVE_KV_REPLICAS). */
  replicas?: number;
  /** Counts and times the RPC requests handled (see @weave/metrics). */
  rpcMetrics?: CallMetrics;
  /** Weave DNS standing in for these resolvers; null or absent: no DNS. */
  dns?: { upstreams: Upstreams } | null;
}

/** Networks are few and change seldom: a pass this often retries a gateway that could not be listened on. */
const DNS_RESYNC_MS = 30_000;

export interface RunningNetwire {
  netwire: Netwire;
  /** Stops answering, then waits for the operations in flight. */
  stop(): Promise<void>;
}

/** netwire on the bus: its state in KV, its events published, its methods served. */
export async function startNetwire(o: NetwireServiceOptions): Promise<RunningNetwire> {
  const kv = await openBucket(o.nc, Buckets.netwire, { replicas: o.replicas ?? 1 });
  // Every service's events, kept for `weave events --since`: made here, as netwire runs on every host.
  await ensureEventHistory(o.nc, { replicas: o.replicas ?? 1, log: o.log });
  const published = new EventPublisher(o.nc, o.host, 'netwire', o.log);
  const peers = PeerAddresses.follow(o.nc, o.host, o.log);
  const store = new KvStore(kv, o.host, o.log);
  const dns = o.dns ? await startWeaveDns({ nc: o.nc, replicas: o.replicas ?? 1, upstreams: o.dns.upstreams, log: o.log }) : null;
  const resyncDns = (): void => {
    if (dns) void store.listNetworks().then((n) => dns.sync(n)).catch((err: unknown) => o.log.warn({ err }, 'weave DNS could not follow the networks; the next pass tries again'));
  };
  // The DNS listens on the gateways of the networks there are: it follows their creation and removal.
  const events: NetwireEvents = {
    publish(kind, data) {
      published.publish(kind, data);
      if (kind === 'network.created' || kind === 'network.deleted' || kind === 'reconciled') resyncDns();
    },
  };
  const netwire = new Netwire({
    host: o.host,
    kernel: o.kernel,
    store,
    events,
    log: o.log,
    mtu: o.mtu,
    mtuOverhead: o.mtuOverhead,
    peerAddresses: () => peers.peers.list(),
    dnsIntercepted: o.dns?.upstreams.intercepted ?? [],
  });
  // Before the first request: Docker may already be calling for networks whose kernel state a
  // crash or reboot took away, and leftovers must go before new links could clash with them.
  const report = await netwire.reconcile();
  o.log.info({ ...report }, 'reconciled kernel state with records');
  resyncDns();
  const dnsTimer = dns ? setInterval(resyncDns, DNS_RESYNC_MS) : null;
  const sub = serveRpc(o.nc, o.host, netwireRpc, timedHandlers(handlers(netwire), o.rpcMetrics), o.log);
  events.publish('service.started', { version: VERSION, pid: process.pid });
  return {
    netwire,
    stop: async () => {
      sub.unsubscribe();
      peers.stop();
      if (dnsTimer) clearInterval(dnsTimer);
      await netwire.idle();
      await dns?.stop();
    },
  };
}

export function handlers(n: Netwire): RpcHandlers<typeof netwireRpc> {
  return {
    createNetwork: (r) => n.createNetwork(r),
    deleteNetwork: (r) => n.deleteNetwork(r),
    createEndpoint: (r) => n.createEndpoint(r),
    join: (r) => n.join(r),
    leave: (r) => n.leave(r),
    deleteEndpoint: (r) => n.deleteEndpoint(r),
    publishPorts: (r) => n.publishPorts(r),
    unpublishPorts: (r) => n.unpublishPorts(r),
    status: () => n.status(),
    reconcileEndpoints: (r) => n.reconcileEndpoints(r),
    isolateEndpoints: (r) => n.isolateEndpoints(r),
  };
}
