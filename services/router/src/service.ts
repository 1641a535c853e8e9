import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { decodeJson, encodeJson, EventPublisher, rpcClient, serveRpc, subscribeEvents } from '@weave/bus';
import { netwireRpc, Presence, routerRpc, sleeveOverhead, Subjects } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { sleevePathMtu } from './address';
import { DataPath, FastPath, SleeveLike } from './datapath';
import { peerIdOf } from './peer-id';
import { PeerChange, PeerTable } from './peers';
import { LinuxTapPlumbing, TapPlumbing } from './taps';

export interface RouterOptions {
  nc: NatsConnection;
  host: string;
  log: Logger;
  /** The underlay address and UDP port other routers send this host's traffic to. */
  address: string;
  port: number;
  heartbeatMs: number;
  /** Silence after which a peer counts as lost. */
  peerTimeoutMs: number;
  /** How often the data path is checked against netwire's networks even without an event. */
  resyncMs?: number;
  /** The data path, started with `sleeveIdentity(host, …)` at `sleeveListen` (default address:port). */
  sleeve: SleeveLike;
  /** The mesh password the sleeve encrypts with; null or absent: plaintext. */
  password?: string | null;
  sleeveListen?: { host: string; port: number };
  plumbing?: TapPlumbing;
  /** The kernel VXLAN fast path, or why there is none; default none (every peer on the sleeve). */
  fastPath?: FastPath | { off: string };
  pathMtu?: (address: string) => Promise<number>;
  now?: () => number;
}

/** What the sleeve is started with: this host's id, and where peers send to. */
export const sleeveIdentity = (host: string, address: string, port: number, password: string | null = null) => ({
  peerId: peerIdOf(host),
  listenHost: address,
  listenPort: port,
  ...(password === null ? {} : { password }),
});

export interface RunningRouter {
  peers: PeerTable;
  dataPath: DataPath;
  stop(): Promise<void>;
}

/**
 * The router's control plane: announces this host on NATS, keeps the peer table from the others'
 * announcements, publishes peer changes as events and answers status. The data path (the sleeve
 * addon and the kernel's VXLAN) is driven from the peer table.
 */
export async function startRouter(o: RouterOptions): Promise<RunningRouter> {
  const now = o.now ?? Date.now;
  const boot = randomBytes(8).toString('hex');
  const peers = new PeerTable(o.host, o.peerTimeoutMs);
  const events = new EventPublisher(o.nc, o.host, 'router', o.log);
  const netwire = rpcClient(o.nc, o.host, netwireRpc);
  const dataPath = new DataPath({
    sleeve: o.sleeve,
    identity: sleeveIdentity(o.host, o.sleeveListen?.host ?? o.address, o.sleeveListen?.port ?? o.port, o.password ?? null),
    plumbing: o.plumbing ?? new LinuxTapPlumbing(),
    fastPath: o.fastPath ?? { off: 'the fast path is off on this host' },
    localNetworks: async () => (await netwire.status({})).networks,
    peers: () => peers.list(),
    pathMtu: o.pathMtu ?? ((address) => sleevePathMtu(address, sleeveOverhead(!!o.password))),
    events,
    log: o.log,
  });
  const announce = (leaving: boolean): void => {
    const p: Presence = { host: o.host, boot, address: o.address, port: o.port, leaving };
    o.nc.publish(Subjects.presence(o.host), encodeJson(p));
  };
  const apply = (changes: PeerChange[]): void => {
    if (changes.length > 0) void dataPath.sync();
    for (const c of changes) {
      if (c.kind === 'connected') {
        o.log.info({ peer: c.peer.host, address: c.peer.address }, 'peer connected');
        events.publish('peer.connected', { peer: c.peer.host, address: c.peer.address, port: c.peer.port });
      } else {
        o.log.warn({ peer: c.host, reason: c.reason }, 'peer disconnected');
        events.publish('peer.disconnected', { peer: c.host, reason: c.reason });
      }
    }
  };

  const presence = o.nc.subscribe(Subjects.allPresence, {
    callback: (err, msg) => {
      if (err) return o.log.error({ err }, 'presence subscription failed');
      const p = Presence.safeParse(safeJson(msg.data));
      if (!p.success) return o.log.warn({ subject: msg.subject }, 'ignored a malformed presence message');
      apply(peers.heard(p.data, now()));
    },
  });
  // netwire's network events say when this host's bridges changed.
  const netwireEvents = subscribeEvents(
    o.nc,
    (e) => {
      if (e.kind.startsWith('network.') || e.kind === 'reconciled' || e.kind === 'service.started') void dataPath.networksChanged();
    },
    (subject, err) => o.log.warn({ subject, err }, 'ignored a malformed netwire event'),
    Subjects.event(o.host, 'netwire', '>'),
  );
  const rpc = serveRpc(o.nc, o.host, routerRpc, {
    status: async () => {
      const list = peers.list();
      const traffic = dataPath.trafficByHost(list.map((p) => p.host));
      return {
        host: o.host,
        address: o.address,
        port: o.port,
        peers: list.map((p) => {
          const t = traffic.get(p.host);
          return { host: p.host, address: p.address, port: p.port, state: p.state, lastSeen: iso(p.lastSeen), since: iso(p.since), ...dataPath.pathOf(p.host), ...(t ? { traffic: t } : {}) };
        }),
        ...dataPath.status(),
      };
    },
  }, o.log);
  await o.nc.flush();
  announce(false);
  const timer = setInterval(() => {
    announce(false);
    apply(peers.tick(now()));
  }, o.heartbeatMs);
  const resync = setInterval(() => void dataPath.networksChanged(), o.resyncMs ?? 10_000);
  await dataPath.networksChanged();
  events.publish('service.started', { version: '0.1.0', pid: process.pid });

  return {
    peers,
    dataPath,
    stop: async () => {
      clearInterval(timer);
      clearInterval(resync);
      announce(true);
      rpc.unsubscribe();
      presence.unsubscribe();
      netwireEvents.unsubscribe();
      await dataPath.sync().catch(() => undefined);
      dataPath.stop();
      await o.nc.flush().catch((err) => o.log.warn(`could not say goodbye to peers: ${describeError(err)}`));
    },
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();

function safeJson(data: Uint8Array): unknown {
  try {
    return decodeJson(data);
  } catch {
    return null;
  }
}
