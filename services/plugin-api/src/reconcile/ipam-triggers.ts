import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { subscribeEvents } from '@weave/bus';
import { Subjects } from '@weave/contracts';
import type { Logger } from '@weave/log';

/**
 * The ipam events of this host after which its containers' addresses may be another host's:
 * it learnt it was reclaimed (`host.fenced`: the addresses others took while it was away are
 * known at once), it registered again (`host.rejoined`: the ones it could not lease again), or it
 * started (a rejoin it did not finish is finished by the pass, see ipam's checkLeases).
 */
export const READDRESS_TRIGGERS = ['host.fenced', 'host.rejoined', 'service.started'] as const;

/** Runs `pass` after each of those events (or of `kinds`) of `host`'s ipam; returns the subscriptions to end. */
export function onIpamTriggers(nc: NatsConnection, host: string, pass: (kind: string) => void, log: Logger, kinds: readonly string[] = READDRESS_TRIGGERS): Subscription[] {
  return kinds.map((kind) =>
    subscribeEvents(nc, (e) => pass(e.kind), (subject, err) => log.warn({ err, subject }, `ignoring a malformed ipam event on ${subject}`), Subjects.event(host, 'ipam', kind)),
  );
}
