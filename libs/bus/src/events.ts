import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { EventDataOf, EventEnvelope, EventKindOf, EventKinds, EVENT_SCHEMA_VERSION, parseEvent, ServiceName, Subjects } from '@weave/contracts';
import type { Logger } from '@weave/log';
import { z } from 'zod';
import { decodeJson, encodeJson } from './json';

/**
 * Publishes this service's events. Data is validated against the contract before it leaves, so
 * a subscriber can trust every payload it sees. Publishing never throws: an event that cannot
 * be sent is logged, and the state change it describes still stands.
 */
export class EventPublisher<S extends ServiceName> {
  private seq = 0;
  constructor(
    private readonly nc: NatsConnection,
    private readonly host: string,
    private readonly service: S,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  publish<K extends EventKindOf<S>>(kind: K, data: EventDataOf<S, K>): void {
    const schema = (EventKinds[this.service] as Record<string, z.ZodType>)[kind]!;
    const envelope: EventEnvelope = {
      v: EVENT_SCHEMA_VERSION,
      seq: ++this.seq,
      time: this.now().toISOString(),
      host: this.host,
      service: this.service,
      kind,
      data: schema.parse(data),
    };
    try {
      this.nc.publish(Subjects.event(this.host, this.service, kind), encodeJson(envelope));
    } catch (err) {
      this.log.warn({ err, kind }, 'could not publish event');
    }
  }
}

/** Subscribes to events matching `subject` (default all), handing each validated envelope on. */
export function subscribeEvents(
  nc: NatsConnection,
  onEvent: (e: EventEnvelope) => void,
  onInvalid: (subject: string, err: unknown) => void,
  subject: string = Subjects.allEvents,
): Subscription {
  return nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return onInvalid(subject, err);
      try {
        onEvent(parseEvent(decodeJson(msg.data)));
      } catch (e) {
        onInvalid(msg.subject, e);
      }
    },
  });
}
