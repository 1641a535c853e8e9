import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { decodeJson, encodeJson, EventPublisher, serveRpc } from '@weave/bus';
import { Presence, routerRpc, Subjects } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { PeerChange, PeerTable } from './peers';

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
  now?: () => number;
}

export interface RunningRouter {
  peers: PeerTable;
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
  const announce = (leaving: boolean): void => {
    const p: Presence = { host: o.host, boot, address: o.address, port: o.port, leaving };
    o.nc.publish(Subjects.presence(o.host), encodeJson(p));
  };
  const apply = (changes: PeerChange[]): void => {
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
  const rpc = serveRpc(o.nc, o.host, routerRpc, {
    status: async () => ({
      host: o.host,
      address: o.address,
      port: o.port,
      peers: peers.list().map((p) => ({ host: p.host, address: p.address, port: p.port, state: p.state, lastSeen: iso(p.lastSeen), since: iso(p.since) })),
    }),
  }, o.log);
  await o.nc.flush();
  announce(false);
  const timer = setInterval(() => {
    announce(false);
    apply(peers.tick(now()));
  }, o.heartbeatMs);
  events.publish('service.started', { version: '0.1.0', pid: process.pid });

  return {
    peers,
    stop: async () => {
      clearInterval(timer);
      announce(true);
      rpc.unsubscribe();
      presence.unsubscribe();
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
