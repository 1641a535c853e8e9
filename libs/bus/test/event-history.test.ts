import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { EventEnvelope, Streams, Subjects } from '@weave/contracts';
import { UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { useNats, waitFor } from '@weave/testing';
import pino from 'pino';
import { ensureEventHistory, EventPublisher, eventStreamConfig, replayEvents } from '../src';

let nc: NatsConnection;
useNats((_, c) => (nc = c), 'test');

const warnings: Array<{ msg: string; differs?: string[] }> = [];
const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
beforeEach(() => (warnings.length = 0));

test('the history is made once; every later start (any host) finds it as it is, silently', async () => {
  await ensureEventHistory(nc, { replicas: 1, log });
  await ensureEventHistory(nc, { replicas: 1, log });
  const info = await (await jetstreamManager(nc)).streams.info(Streams.events.name);
  expect(info.config).toMatchObject({ subjects: [Subjects.allEvents], max_msgs: Streams.events.maxMsgs, max_bytes: Streams.events.maxBytes, num_replicas: 1, discard: 'old' });
  expect(info.config.max_age).toBe(Streams.events.maxAgeMs * 1e6);
  expect(warnings).toEqual([]);
});

test('a history made with other settings is kept, and the differences are logged', async () => {
  await (await jetstreamManager(nc)).streams.add({ ...eventStreamConfig(1), max_msgs: 10 });
  await ensureEventHistory(nc, { replicas: 1, log });
  expect((await (await jetstreamManager(nc)).streams.info(Streams.events.name)).config.max_msgs).toBe(10);
  expect(warnings).toEqual([expect.objectContaining({ differs: [`max_msgs: 10 (here ${Streams.events.maxMsgs})`] })]);
});

test('replay: the stored events of the filter since the time given, then the new ones, each once', async () => {
  await ensureEventHistory(nc, { replicas: 1, log });
  const h1 = new EventPublisher(nc, 'h1', 'ipam', silentLogger());
  const h2 = new EventPublisher(nc, 'h2', 'ipam', silentLogger());
  const started = () => h1.publish('service.started', { version: '1', pid: 1 });
  started();
  await nc.flush();
  await new Promise((r) => setTimeout(r, 20));
  const since = new Date();
  for (let i = 0; i < 3; i++) started(), h2.publish('service.started', { version: '1', pid: 2 });
  await nc.flush();
  const seen: EventEnvelope[] = [];
  const replay = await replayEvents(nc, { subject: Subjects.event('h1', 'ipam', '>'), since, onEvent: (e) => seen.push(e), onInvalid: (s, e) => fail(`${s}: ${e}`) });
  await waitFor(() => seen.length === 3, { what: 'the history' });
  for (let i = 0; i < 2; i++) started();
  await waitFor(() => seen.length === 5, { what: 'the new events' });
  await replay.stop();
  expect(seen.map((e) => `${e.host} ${e.seq}`)).toEqual(['h1 2', 'h1 3', 'h1 4', 'h1 5', 'h1 6']);
});

test('replay without a history says so', async () => {
  const r = replayEvents(nc, { subject: Subjects.allEvents, since: new Date(), onEvent: () => undefined, onInvalid: () => undefined });
  await expect(r).rejects.toThrow(UnavailableError);
  await expect(r).rejects.toThrow(/no event history: JetStream has no stream WEAVE_EVENTS/);
});
