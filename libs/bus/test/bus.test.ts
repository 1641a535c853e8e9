import type { NatsConnection } from '@nats-io/transport-node';
import { headers, NoRespondersError, RequestError, TimeoutError } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { jserrors } from '@nats-io/jetstream/internal';
import { EventEnvelope, ipamRpc, RpcHeaders, Subjects } from '@weave/contracts';
import { ConflictError, describeError, ExhaustedError, InvalidRequestError, UnavailableError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { NatsServer, useNats, waitFor } from '@weave/testing';
import { z } from 'zod';
import { ELECTION_WAIT_MS, EventPublisher, KV, kvCreate, kvDelete, kvGet, kvGetFromLeader, kvMutate, kvMutateWithRevision, kvUpdate, openBucket, RpcContext, rpcClient, serveRpc, subscribeEvents } from '../src';

let server: NatsServer;
let nc: NatsConnection;
const log = silentLogger();

useNats((s, c) => ((server = s), (nc = c)));

const pool = { poolId: 'p1', pool: '10.1.0.0/24', data: {} };
const handlers = {
  requestPool: async () => pool,
  releasePool: async () => ({}),
  requestAddress: async (r: { address: string | null }) => {
    if (r.address === '10.1.0.9') throw new ExhaustedError('range 10.1.0.8/29 is full');
    return { address: 'not-an-address' };
  },
  releaseAddress: async () => ({}),
  status: async (_r: unknown, ctx: RpcContext) => {
    contexts.push(ctx);
    return { pools: [], hosts: [] };
  },
  reconcileHost: async () => ({ released: [], releasedPools: [], spared: 0 }),
  rmpeer: async (r: { host: string }) => ({ outcome: 'already' as const, host: r.host, by: 'h1', at: '2026-01-01T00:00:00.000Z' }),
  checkLeases: async () => ({ addresses: [] }),
  stickToMac: async () => ({ sticky: false, reason: null }),
};
const contexts: RpcContext[] = [];

describe('rpc', () => {
  let sub: { unsubscribe(): void };
  beforeAll(() => {
    sub = serveRpc(nc, 'h1', ipamRpc, handlers, log);
  });
  afterAll(() => sub.unsubscribe());

  it('round-trips a validated request', async () => {
    const ipam = rpcClient(nc, 'h1', ipamRpc);
    await expect(ipam.requestPool({ addressSpace: 'weave-local', pool: null, subPool: null, v6: false, options: {} })).resolves.toEqual(pool);
  });

  it('carries the error class across the wire', async () => {
    const ipam = rpcClient(nc, 'h1', ipamRpc);
    await expect(ipam.requestAddress({ poolId: 'p1', address: '10.1.0.9', kind: 'endpoint' })).rejects.toThrow(ExhaustedError);
  });

  it('refuses a reply its own schema does not allow', async () => {
    const ipam = rpcClient(nc, 'h1', ipamRpc);
    await expect(ipam.requestAddress({ poolId: 'p1', address: null, kind: 'endpoint' })).rejects.toThrow(/invalid reply/);
  });

  it('answers malformed requests with an invalid error and keeps serving', async () => {
    const cases = ['not json', '{"poolId":5}', '[]', '\u00ff\u00fe'];
    for (const body of cases) {
      const m = await nc.request(Subjects.rpc('h1', 'ipam', 'releasePool'), body, { timeout: 2000 });
      expect(m.json()).toMatchObject({ ok: false, error: { code: 'invalid' } });
    }
    const unknown = await nc.request(Subjects.rpc('h1', 'ipam', 'dropTables'), '{}', { timeout: 2000 });
    expect(unknown.json()).toMatchObject({ ok: false, error: { code: 'invalid', message: expect.stringContaining('no method') } });
    for (const inherited of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const m = await nc.request(Subjects.rpc('h1', 'ipam', inherited), '{}', { timeout: 2000 });
      expect({ inherited, reply: m.json() }).toMatchObject({ inherited, reply: { ok: false, error: { code: 'invalid', message: expect.stringContaining('no method') } } });
    }
    await expect(rpcClient(nc, 'h1', ipamRpc).releasePool({ poolId: 'p1' })).resolves.toEqual({});
  });

  it('cuts an error message that quotes a huge request, so the reply still fits and the service lives', async () => {
    // 150,000 NULs: 900 kB as JSON, and the message quotes it escaped once more.
    const poolId = '\u0000'.repeat(150_000);
    const slow = serveRpc(nc, 'h2', ipamRpc, { ...handlers, releasePool: async (r) => { throw new InvalidRequestError(`${JSON.stringify(r.poolId)} is not a pool id`); } }, log);
    try {
      const m = await nc.request(Subjects.rpc('h2', 'ipam', 'releasePool'), JSON.stringify({ poolId }), { timeout: 5000 });
      const reply = m.json<{ ok: false; error: { code: string; message: string } }>();
      expect(reply.error.code).toBe('invalid');
      expect(reply.error.message).toMatch(/characters in all\)$/);
      expect(m.data.length).toBeLessThan(64 * 1024);
      await expect(rpcClient(nc, 'h2', ipamRpc).status({})).resolves.toEqual({ pools: [], hosts: [] });
    } finally {
      slow.unsubscribe();
    }
  });

  it('rejects a bad request before sending it', async () => {
    const ipam = rpcClient(nc, 'h1', ipamRpc);
    await expect(ipam.releaseAddress({ poolId: 'p1', address: '300.1.1.1' })).rejects.toThrow(z.ZodError);
  });

  it('hands the caller\'s deadline to the handler: now plus the client\'s timeout', async () => {
    contexts.splice(0);
    const before = Date.now();
    await rpcClient(nc, 'h1', ipamRpc, { timeoutMs: 3000 }).status({});
    const after = Date.now();
    expect(contexts).toHaveLength(1);
    expect(contexts[0]!.deadline).toBeGreaterThanOrEqual(before + 3000);
    expect(contexts[0]!.deadline).toBeLessThanOrEqual(after + 3000);
  });

  it('a request without a deadline has none; a malformed deadline is an invalid request', async () => {
    contexts.splice(0);
    const raw = (h?: string) => {
      const hdrs = headers();
      if (h !== undefined) hdrs.set(RpcHeaders.deadline, h);
      return nc.request(Subjects.rpc('h1', 'ipam', 'status'), '{}', { timeout: 2000, headers: hdrs }).then((m) => m.json());
    };
    expect(await raw()).toEqual({ ok: true, result: { pools: [], hosts: [] } });
    expect(contexts).toEqual([{ deadline: null }]);
    for (const bad of ['soon', '-5', '1.5', '99999999999999999']) {
      expect(await raw(bad)).toMatchObject({ ok: false, error: { code: 'invalid', message: expect.stringContaining('bad Weave-Deadline header') } });
    }
    expect(contexts).toHaveLength(1);
  });

  it('says which service on which host is missing', async () => {
    const ipam = rpcClient(nc, 'nobody', ipamRpc);
    const err = await ipam.status({}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/ipam service on host nobody is not running/);
  });
});

describe('events', () => {
  it('publishes validated envelopes with increasing seq', async () => {
    const seen: EventEnvelope[] = [];
    const bad: string[] = [];
    const sub = subscribeEvents(nc, (e) => seen.push(e), (s) => bad.push(s));
    await nc.flush();
    const pub = new EventPublisher(nc, 'h1', 'ipam', log, () => new Date('2026-01-01T00:00:00Z'));
    pub.publish('address.released', { poolId: 'p', address: '10.0.0.1' });
    pub.publish('address.released', { poolId: 'p', address: '10.0.0.2' });
    nc.publish('weave.events.h1.ipam.bogus', '{"nope":1}');
    await waitFor(() => seen.length === 2 && bad.length === 1, { what: 'two events and one rejected' });
    expect(seen.map((e) => e.seq)).toEqual([1, 2]);
    expect(seen[0]).toMatchObject({ host: 'h1', service: 'ipam', kind: 'address.released', time: '2026-01-01T00:00:00.000Z' });
    expect(bad).toEqual(['weave.events.h1.ipam.bogus']);
    sub.unsubscribe();
  });

  it('refuses to publish data outside the contract', () => {
    const pub = new EventPublisher(nc, 'h1', 'ipam', log);
    expect(() => pub.publish('address.released', { poolId: 'p', address: 'nope' })).toThrow(z.ZodError);
  });
});

describe('kv', () => {
  const Counter = z.object({ n: z.number() });
  it('create is a claim: the second one conflicts', async () => {
    const kv = await openBucket(nc, 'test-claims');
    await kvCreate(kv, 'a', { n: 1 });
    await expect(kvCreate(kv, 'a', { n: 2 })).rejects.toThrow(ConflictError);
    expect((await kvGet(kv, 'a', Counter))?.value).toEqual({ n: 1 });
  });

  it('compare-and-set loses no update under concurrency', async () => {
    const kv = await openBucket(nc, 'test-cas');
    const bump = () => kvMutate(kv, 'c', Counter, (cur) => ({ change: { put: { n: (cur?.n ?? 0) + 1 } }, result: null }), 100);
    await Promise.all(Array.from({ length: 25 }, bump));
    expect((await kvGet(kv, 'c', Counter))?.value).toEqual({ n: 25 });
  });

  it('reads from the leader as kvGet does: the value and revision, null when absent or deleted', async () => {
    const kv = await openBucket(nc, 'test-leader');
    const revision = await kvCreate(kv, 'a', { n: 7 });
    expect(await kvGetFromLeader(kv, 'a', Counter)).toEqual({ value: { n: 7 }, revision });
    expect(await kvGetFromLeader(kv, 'b', Counter)).toBeNull();
    await kvDelete(kv, 'a');
    expect(await kvGetFromLeader(kv, 'a', Counter)).toBeNull();
    await kv.put('x', '{"n":"one"}');
    await expect(kvGetFromLeader(kv, 'x', Counter)).rejects.toThrow(/does not match its schema/);
  });

  it('refuses data that does not match the schema', async () => {
    const kv = await openBucket(nc, 'test-schema');
    await kv.put('x', '{"n":"one"}');
    await expect(kvGet(kv, 'x', Counter)).rejects.toThrow(/does not match its schema/);
  });

  it('reports the revision it wrote, and none when it kept or deleted the key', async () => {
    const kv = await openBucket(nc, 'test-rev');
    const put = await kvMutateWithRevision(kv, 'r', Counter, () => ({ change: { put: { n: 1 } }, result: 'put' }));
    expect(put).toEqual({ result: 'put', revision: (await kvGet(kv, 'r', Counter))!.revision });
    const updated = await kvMutateWithRevision(kv, 'r', Counter, (cur) => ({ change: { put: { n: cur!.n + 1 } }, result: null }));
    expect(updated.revision).toBe(put.revision! + 1);
    expect((await kvMutateWithRevision(kv, 'r', Counter, () => ({ change: { keep: true }, result: null }))).revision).toBeNull();
    expect((await kvMutateWithRevision(kv, 'r', Counter, () => ({ change: { delete: true }, result: null }))).revision).toBeNull();
  });

  it('deletes through the loop and reads back null', async () => {
    const kv = await openBucket(nc, 'test-del');
    await kvCreate(kv, 'd', { n: 1 });
    await kvMutate(kv, 'd', Counter, () => ({ change: { delete: true }, result: null }));
    expect(await kvGet(kv, 'd', Counter)).toBeNull();
    await kvCreate(kv, 'd', { n: 2 });
  });

  // What a host cut off from most of a cluster sees, each way its client meets it: no server it
  // reaches leads the bucket's stream (a write finds no responder), or the one it still believes
  // in does not answer (a timeout; here the stream is gone, and the client waits as long).
  it('a read-modify-write no leader answers fails as unavailable within the client timeout, saying there is no quorum', async () => {
    const kv = await openBucket(nc, 'test-noquorum');
    await kvCreate(kv, 'a', { n: 1 });
    await (await jetstreamManager(nc)).streams.delete('KV_test-noquorum');
    const t0 = Date.now();
    const err = await kvMutate(kv, 'a', Counter, () => ({ change: { put: { n: 2 } }, result: null })).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/^KV bucket test-noquorum: cannot read a: no quorum answered in time: .*cut off from most of the mesh/);
  }, 15_000);

  // After a partition heals, the buckets' streams are leaderless for ~10 s while JetStream itself
  // has quorum. Here the stream is deleted (no responder for the write, the API still answers),
  // then made again as a leader would come back.
  it('a write that finds no leader while JetStream has quorum waits for one, and lands once the stream is led again', async () => {
    const kv = await openBucket(nc, 'test-election');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete('KV_test-election');
    const t0 = Date.now();
    setTimeout(() => void openBucket(nc, 'test-election'), 1200);
    const revision = await kvCreate(kv, 'a', { n: 1 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1200);
    expect(await kvGet(kv, 'a', Counter)).toEqual({ value: { n: 1 }, revision });
  }, 15_000);

  it(`a write still leaderless after ${ELECTION_WAIT_MS / 1000} s fails as unavailable, saying an election is under way`, async () => {
    const kv = await openBucket(nc, 'test-leaderless');
    await (await jetstreamManager(nc)).streams.delete('KV_test-leaderless');
    const t0 = Date.now();
    const err = await kvUpdate(kv, 'a', { n: 1 }, 1).catch((e: unknown) => e);
    const ms = Date.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(ELECTION_WAIT_MS - 1000);
    expect(ms).toBeLessThan(ELECTION_WAIT_MS + 2000);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/^KV bucket test-leaderless: cannot update a: no leader for the bucket \(no leader after \d+\.\d s\), though JetStream has quorum: a leader election is under way/);
  }, 15_000);

  it('a write no server takes (no responders) is unavailable for want of a quorum, not "jetstream is not enabled"; other failures pass as they were', async () => {
    const failing = (e: Error) => ({ bucket: 'b1', put: () => Promise.reject(e), create: () => Promise.reject(e), get: () => Promise.reject(e), delete: () => Promise.reject(e) }) as unknown as KV;
    // As the client throws it: JetStreamNotEnabled around the request's no-responders error.
    const subject = '$KV.b1.k';
    const noResponders = new jserrors.JetStreamNotEnabled('jetstream is not enabled', { cause: new RequestError(`no responders: '${subject}'`, { cause: new NoRespondersError(subject) }) });
    const err = await kvCreate(failing(noResponders), 'k', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/^KV bucket b1: cannot create k: no quorum: no server this host's nats-server reaches leads the bucket/);
    expect(describeError(err)).not.toMatch(/not enabled/);
    await expect(kvGet(failing(new TimeoutError()), 'k', Counter)).rejects.toThrow(/^KV bucket b1: cannot read k: no quorum answered in time/);
    await expect(kvDelete(failing(new TimeoutError()), 'k', 3)).rejects.toThrow(/cannot delete k: no quorum/);
    const other = new Error('permissions violation');
    await expect(kvCreate(failing(other), 'k', {})).rejects.toBe(other);
  });
});

test('InvalidRequestError has the invalid code', () => {
  expect(new InvalidRequestError('x').code).toBe('invalid');
});
