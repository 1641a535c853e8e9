import type { NatsConnection } from '@nats-io/nats-core';
import { rpcClient, subscribeEvents } from '@weave/bus';
import { EventKinds, routerRpc, Subjects, type EventEnvelope } from '@weave/contracts';
import type { Logger } from '@weave/log';

/**
 * The underlay addresses of the mesh's other hosts, as this host's router knows them: its status
 * once (when it answers) and its `peer.connected` / `peer.disconnected` events after. netwire
 * bounds a new network's MTU by the routes to them. Best effort: without a router, the default
 * route alone decides, as before.
 */
export class PeerAddresses {
  private readonly byHost = new Map<string, string>();

  list(): string[] {
    return [...this.byHost.values()].sort();
  }

  /** Folds one router event in; anything else is ignored. */
  apply(e: Pick<EventEnvelope, 'service' | 'kind' | 'data'>): void {
    if (e.service !== 'router') return;
    if (e.kind === 'peer.connected') {
      const d = EventKinds.router['peer.connected'].parse(e.data);
      this.byHost.set(d.peer, d.address);
    } else if (e.kind === 'peer.disconnected') {
      this.byHost.delete(EventKinds.router['peer.disconnected'].parse(e.data).peer);
    }
  }

  /** Follows this host's router; returns what stops following it. */
  static follow(nc: NatsConnection, host: string, log: Logger): { peers: PeerAddresses; stop(): void } {
    const peers = new PeerAddresses();
    const sub = subscribeEvents(nc, (e) => peers.apply(e), (subject, err) => log.debug({ subject, err }, 'ignored a malformed router event'), Subjects.event(host, 'router', '>'));
    void rpcClient(nc, host, routerRpc)
      .status({})
      .then((s) => s.peers.filter((p) => p.state === 'connected').forEach((p) => peers.byHost.set(p.host, p.address)))
      .catch(() => undefined); // no router yet: its events will say
    return { peers, stop: () => sub.unsubscribe() };
  }
}
