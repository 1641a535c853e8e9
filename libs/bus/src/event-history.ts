import type { NatsConnection } from '@nats-io/nats-core';
import { DiscardPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, RetentionPolicy, StorageType, StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { EventEnvelope, parseEvent, Streams } from '@weave/contracts';
import { UnavailableError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { decodeJson } from './json';

/** The server's answer to adding a stream whose name is taken with other settings. */
const STREAM_NAME_IN_USE = 10058;

/** The events stream's settings; the same on every host, so each host's add is a no-op after the first. */
export function eventStreamConfig(replicas: number): Partial<StreamConfig> & { name: string } {
  const s = Streams.events;
  return {
    name: s.name,
    subjects: [...s.subjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(s.maxAgeMs),
    max_bytes: s.maxBytes,
    max_msgs: s.maxMsgs,
    num_replicas: replicas,
  };
}

/**
 * Makes sure the event history exists. Adding a stream with the settings it already has is a
 * no-op, so every host can do it at every start. A stream made with other settings (another
 * version, another WEAVE_KV_REPLICAS) is kept as it is and the differences are logged: hosts never
 * fight over it. The history is not needed for anything else to work, so failing to make it is
 * logged, not thrown.
 */
export async function ensureEventHistory(nc: NatsConnection, o: { replicas: number; log: Logger }): Promise<void> {
  const want = eventStreamConfig(o.replicas);
  try {
    const jsm = await jetstreamManager(nc);
    try {
      await jsm.streams.add(want);
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === STREAM_NAME_IN_USE)) throw e;
      const have = (await jsm.streams.info(want.name)).config as unknown as Record<string, unknown>;
      const differs = Object.entries(want)
        .filter(([k, v]) => JSON.stringify(have[k]) !== JSON.stringify(v))
        .map(([k, v]) => `${k}: ${JSON.stringify(have[k])} (here ${JSON.stringify(v)})`);
      o.log.warn({ stream: want.name, differs }, `event history ${want.name} exists with other settings; kept as it is`);
    }
  } catch (err) {
    o.log.warn({ err, stream: want.name }, `could not make the event history ${want.name}: weave events --since has no history until the next start`);
  }
}

export interface EventReplay {
  /** Stops delivering and removes the server's consumer. */
  stop(): Promise<void>;
}

/**
 * Delivers the events on `subject` stored since `since`, then every new one as it is stored, from
 * one ordered consumer: history and live come from one sequence, so nothing is missed or repeated
 * where one ends and the other begins (the consumer recreates itself from the last sequence it
 * delivered if the server loses it).
 */
export async function replayEvents(
  nc: NatsConnection,
  o: { subject: string; since: Date; onEvent: (e: EventEnvelope) => void; onInvalid: (subject: string, err: unknown) => void },
): Promise<EventReplay> {
  const name = Streams.events.name;
  const consumer = await jetstream(nc)
    .consumers.get(name, { filter_subjects: o.subject, opt_start_time: o.since.toISOString() })
    .catch((e: unknown) => {
      if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound) throw new UnavailableError(`no event history: JetStream has no stream ${name} (netwire makes it at start: is the stack up and up to date?)`, { cause: e });
      throw new UnavailableError(`cannot read the event history ${name}: ${(e as Error).message}`, { cause: e });
    });
  const messages = await consumer.consume();
  void (async () => {
    for await (const m of messages) {
      try {
        o.onEvent(parseEvent(decodeJson(m.data)));
      } catch (e) {
        o.onInvalid(m.subject, e);
      }
    }
  })();
  return { stop: async () => void (await messages.close()) };
}
