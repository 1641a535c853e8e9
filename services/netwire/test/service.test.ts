import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { decodeJson } from '@weave/bus';
import { EventEnvelope, Streams, Subjects } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { useNats } from '@weave/testing';
import { FakeKernel, startNetwire } from '../src';

let nc: NatsConnection;
useNats((_, c) => (nc = c));

test('a fresh start makes the event history before its first event, and a second host start finds it made', async () => {
  const start = (host: string) => startNetwire({ nc, host, kernel: new FakeKernel(), log: silentLogger(), mtu: null });
  const [a, b] = [await start('h1'), await start('h2')];
  await Promise.all([a.stop(), b.stop()]);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(Streams.events.name);
  expect(info.config.subjects).toEqual([Subjects.allEvents]);
  const stored: EventEnvelope[] = [];
  for (let seq = 1; seq <= info.state.last_seq; seq++) stored.push(decodeJson((await jsm.streams.getMessage(Streams.events.name, { seq }))!.data) as EventEnvelope);
  // From each host's first event (seq 1) on: nothing was published before the history existed.
  expect(stored.map((e) => `${e.host} ${e.seq} ${e.kind}`)).toEqual(['h1 1 reconciled', 'h1 2 service.started', 'h2 1 reconciled', 'h2 2 service.started']);
});
