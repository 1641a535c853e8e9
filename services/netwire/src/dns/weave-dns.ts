import type { NatsConnection } from '@nats-io/nats-core';
import { mirrorKv, openBucket } from '@weave/bus';
import { Buckets, DnsRecord } from '@weave/contracts';
import type { Logger } from '@weave/log';
import type { NetworkRecord } from '../store';
import { forwarder } from './forward';
import { NameIndex } from './names';
import { dnsNetworkOf } from './networks';
import { DnsServer } from './server';
import type { Upstreams } from './upstreams';

/** How long one host resolver gets to answer before the next is asked. */
const FORWARD_TIMEOUT_MS = 2000;

export interface WeaveDns {
  /** Serves exactly these networks (called after every change of netwire's networks). */
  sync(networks: readonly NetworkRecord[]): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Weave DNS on this host: the mesh's names (every host's plugin-api writes its containers' into
 * bucket weave-dns, followed here by one watch) answered on each network's gateway. Starts
 * without waiting for the bucket: until its first snapshot, names are passed on as unknown.
 */
export async function startWeaveDns(o: { nc: NatsConnection; replicas: number; upstreams: Upstreams; log: Logger; port?: number }): Promise<WeaveDns> {
  const log = o.log.child({ part: 'dns' });
  const mirror = mirrorKv(await openBucket(o.nc, Buckets.dns, { replicas: o.replicas }), DnsRecord, { log });
  let names = new NameIndex([]);
  mirror.onChange(() => (names = new NameIndex(mirror.entries().map(([, v]) => v.value))));
  const server = new DnsServer({ names: () => names, forward: forwarder(o.upstreams.forwardTo, { timeoutMs: FORWARD_TIMEOUT_MS }), log, port: o.port });
  log.info({ ...o.upstreams }, 'weave DNS answers the mesh names; other names go to the host resolvers');
  return {
    sync: (networks) => server.sync(networks.flatMap((n) => dnsNetworkOf(n) ?? [])),
    stop: async () => {
      await server.stop();
      await mirror.stop();
    },
  };
}
