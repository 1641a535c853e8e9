import { jetstreamManager } from '@nats-io/jetstream';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { UnavailableError } from '@weave/errors';
import pino from 'pino';
import { NatsServer, useNats, waitFor } from '@weave/testing';
import { z } from 'zod';
import { KV, KvMirror, mirrorKeys, mirrorKv, openBucket } from '../src';

/** The mirror against a real nats-server: a fresh one per test, since some tests restart it. */
let server: NatsServer;
let nc: NatsConnection;
useNats((s, c) => ((server = s), (nc = c)), 'test');

/** Warnings the mirrors logged, so a test can tell that a watch was reopened and why. */
const warnings: string[] = [];
const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
beforeEach(() => void warnings.splice(0));
const Item = z.object({ n: z.number() });
const put = (kv: KV, key: string, n: number) => kv.put(key, JSON.stringify({ n }));
const mirrors: Array<KvMirror<unknown>> = [];
afterEach(async () => {
  for (const m of mirrors.splice(0)) await m.stop();
});

function mirror(kv: KV, filter?: string) {
  const m = mirrorKv(kv, Item, { log, filter, reopenMs: 50 });
  mirrors.push(m);
  return m;
}
const keys = (m: KvMirror<unknown>) => m.keys().sort();
const consumersOf = async (bucket: string) => {
  const jsm = await jetstreamManager(nc);
  const out: string[] = [];
  for await (const c of jsm.consumers.list(`KV_${bucket}`)) out.push(c.name);
  return out;
};

test('is ready with a snapshot of the latest entries: deleted keys absent, invalid values left out', async () => {
  const kv = await openBucket(nc, 'm-snap', { history: 5 });
  await put(kv, 'a', 1);
  await put(kv, 'a', 2);
  await put(kv, 'b', 3);
  await put(kv, 'c', 4);
  await kv.delete('c');
  await kv.put('bad', '{"n":"three"}');
  const m = mirror(kv);
  await m.ready();
  expect(keys(m)).toEqual(['a', 'b']);
  expect(m.get('a')).toEqual({ value: { n: 2 }, revision: 2 });
  expect(m.revision).toBeGreaterThanOrEqual(6);
  expect(warnings).toEqual([expect.stringMatching(/^KV key bad holds data that does not match its schema; the mirror leaves it out/)]);
});

test('an empty bucket is ready at once', async () => {
  const m = mirror(await openBucket(nc, 'm-empty'));
  await m.ready();
  expect(m.keys()).toEqual([]);
});

test('follows creates, updates and deletes, and caughtUp gives read-your-writes', async () => {
  const kv = await openBucket(nc, 'm-live');
  const m = mirror(kv);
  await m.ready();
  for (let i = 0; i < 20; i++) {
    const rev = await put(kv, `k${i}`, i);
    await m.caughtUp(rev);
    expect(m.get(`k${i}`)).toEqual({ value: { n: i }, revision: rev });
  }
  await kv.delete('k3');
  await kv.purge('k4');
  const rev = await put(kv, 'k5', 55);
  await m.caughtUp(rev);
  expect(m.keys()).toHaveLength(18);
  expect(m.get('k3')).toBeUndefined();
  expect(m.get('k4')).toBeUndefined();
  expect(m.get('k5')?.value).toEqual({ n: 55 });
});

test('a revision nobody wrote yet is an unavailable error after the wait, not a hang', async () => {
  const kv = await openBucket(nc, 'm-late');
  const m = mirror(kv);
  const rev = await put(kv, 'a', 1);
  const err = await m.caughtUp(rev + 10, 200).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(UnavailableError);
  expect((err as Error).message).toMatch(new RegExp(`has not caught up with revision ${rev + 10} \\(it is at ${rev}\\) after 200 ms`));
});

test('upToDate waits until every write the bucket had is reflected, also others\' writes while the watch is down', async () => {
  const kv = await openBucket(nc, 'm-uptodate');
  await put(kv, 'a', 1);
  const m = mirrorKv(kv, Item, { log, reopenMs: 300 });
  mirrors.push(m);
  await m.upToDate();
  expect(keys(m)).toEqual(['a']);
  const [watch] = await consumersOf('m-uptodate');
  await (await jetstreamManager(nc)).consumers.delete('KV_m-uptodate', watch!);
  const other = await connect({ servers: server.url });
  try {
    const kv2 = await openBucket(other, 'm-uptodate');
    await put(kv2, 'b', 2);
    await kv2.delete('a');
    // Written after the watch's consumer was gone: nothing delivered them yet.
    expect(keys(m)).toEqual(['a']);
    await m.upToDate(5000);
    expect(keys(m)).toEqual(['b']);
  } finally {
    await other.close();
  }
});

test('upToDate refuses a mirror of some keys: the bucket\'s last revision may be of a key it never sees', async () => {
  const kv = await openBucket(nc, 'm-uptodate-filtered');
  const m = mirrorKeys(kv, { log, filter: 'p1.*' });
  mirrors.push(m);
  await expect(m.upToDate()).rejects.toThrow(/follows only p1\.\*, so it cannot tell it has every write/);
});

test('a keys-only mirror of one prefix sees only that prefix', async () => {
  const kv = await openBucket(nc, 'm-prefix');
  await put(kv, 'p1.a', 1);
  await put(kv, 'p2.a', 2);
  const m = mirrorKeys(kv, { log, filter: 'p1.*' });
  mirrors.push(m);
  await m.ready();
  const rev = await put(kv, 'p1.b', 3);
  await put(kv, 'p2.b', 4);
  await m.caughtUp(rev);
  expect(m.keys().sort()).toEqual(['p1.a', 'p1.b']);
  expect(m.keys('p1')).toHaveLength(2);
  expect(m.get('p1.a')).toEqual({ value: null, revision: 1 });
});

test('tells listeners of every change', async () => {
  const kv = await openBucket(nc, 'm-listen');
  const m = mirror(kv);
  let changes = 0;
  m.onChange(() => changes++);
  await m.ready();
  expect(changes).toBe(1); // the snapshot
  await m.caughtUp(await put(kv, 'a', 1));
  await m.caughtUp(await put(kv, 'b', 1));
  expect(changes).toBe(3);
});

test('reopens when its consumer is deleted, and misses nothing written meanwhile', async () => {
  const kv = await openBucket(nc, 'm-deleted');
  await put(kv, 'a', 1);
  const m = mirror(kv);
  await m.ready();
  const [first] = await consumersOf('m-deleted');
  expect(first).toBeDefined();
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.delete('KV_m-deleted', first!);
  await put(kv, 'b', 2);
  await kv.delete('a');
  await waitFor(() => keys(m).join() === 'b', { what: 'the mirror to reopen and show b without a', timeoutMs: 5000 });
  const rev = await put(kv, 'c', 3);
  await m.caughtUp(rev, 5000);
  expect(keys(m)).toEqual(['b', 'c']);
  expect(await consumersOf('m-deleted')).not.toContain(first);
  expect(warnings).toEqual([expect.stringMatching(new RegExp(`watch of KV bucket m-deleted ended \\(its consumer ${first} was deleted\\); opening it again`))]);
});

test('reopens after nats-server restarts, with the state changed while it was away', async () => {
  const kv = await openBucket(nc, 'm-restart');
  await put(kv, 'a', 1);
  await put(kv, 'b', 2);
  const m = mirror(kv);
  await m.ready();
  await server.kill();
  await server.restart();
  // Another client changes the bucket as soon as the server is back.
  const other = await connect({ servers: server.url });
  try {
    const kv2 = await waitFor(() => openBucket(other, 'm-restart'), { what: 'JetStream back after the restart', timeoutMs: 10_000 });
    await kv2.delete('a');
    const rev = await put(kv2, 'c', 3);
    await m.caughtUp(rev, 15_000);
    expect(keys(m)).toEqual(['b', 'c']);
    const rev2 = await put(kv2, 'd', 4);
    await m.caughtUp(rev2, 5000);
    expect(keys(m)).toEqual(['b', 'c', 'd']);
    expect(warnings[0]).toMatch(/watch of KV bucket m-restart ended \(the connection to NATS was re-established\)/);
  } finally {
    await other.close();
  }
}, 30_000);

test('stop fails pending waits and removes its consumer', async () => {
  const kv = await openBucket(nc, 'm-stop');
  const m = mirrorKv(kv, Item, { log });
  await m.ready();
  const pending = m.caughtUp(1000, 10_000);
  await m.stop();
  await expect(pending).rejects.toThrow(UnavailableError);
  await expect(m.ready()).rejects.toThrow(/stopped/);
  await waitFor(async () => (await consumersOf('m-stop')).length === 0, { what: 'the watch consumer to go', timeoutMs: 5000 });
});

test('stops by itself when its connection is closed, instead of retrying for ever', async () => {
  const own = await connect({ servers: server.url });
  const m = mirrorKv(await openBucket(own, 'm-closed'), Item, { log, reopenMs: 20 });
  await m.ready();
  await own.close();
  await waitFor(() => m.ready().then(() => false, (e: Error) => /connection was closed/.test(e.message)), { what: 'the mirror to stop', timeoutMs: 5000 });
  await m.stop();
});
