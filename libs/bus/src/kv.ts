import { NoRespondersError, RequestError, TimeoutError, type NatsConnection } from '@nats-io/nats-core';
import { JetStreamApiError } from '@nats-io/jetstream';
import { jserrors } from '@nats-io/jetstream/internal';
import { Bucket, KV, Kvm, type KvEntry } from '@nats-io/kv';
import { ConflictError, InternalError, UnavailableError } from '@weave/errors';
import { z } from 'zod';
import { encodeJson } from './json';

export type { KV } from '@nats-io/kv';

export interface Versioned<T> {
  value: T;
  revision: number;
}

/** Opens (creating if needed) a KV bucket. `replicas` > 1 only makes sense in a NATS cluster. */
export async function openBucket(nc: NatsConnection, name: string, o: { replicas?: number; history?: number } = {}): Promise<KV> {
  try {
    return await new Kvm(nc).create(name, { replicas: o.replicas ?? 1, history: o.history ?? 1 });
  } catch (e) {
    throw new UnavailableError(`cannot open JetStream KV bucket ${name}: is JetStream enabled on the nats-server (-js)?`, { cause: e });
  }
}

/** Reads a key as JSON validated by `schema`; null when absent or deleted. */
export async function kvGet<T extends z.ZodType>(kv: KV, key: string, schema: T): Promise<Versioned<z.output<T>> | null> {
  return versioned(key, await kv.get(key).catch(noQuorum(kv, 'read', key)), schema);
}

/** An entry as its value validated by `schema`, with its revision; null when absent or deleted. */
function versioned<T extends z.ZodType>(key: string, e: KvEntry | null, schema: T): Versioned<z.output<T>> | null {
  if (!e || e.operation !== 'PUT') return null;
  const parsed = schema.safeParse(e.json());
  if (!parsed.success) throw new InternalError(`KV key ${key} holds data that does not match its schema: ${z.prettifyError(parsed.error)}`);
  return { value: parsed.data, revision: e.revision };
}

/**
 * Reads a key from the bucket's stream leader. `kvGet` may be answered by any replica (KV's
 * direct get), which can lag a write another call of this host just made; this cannot, at the
 * price of the leader round trip. For the rare read that must see such a write.
 */
export async function kvGetFromLeader<T extends z.ZodType>(kv: KV, key: string, schema: T): Promise<Versioned<z.output<T>> | null> {
  if (!(kv instanceof Bucket)) return kvGet(kv, key, schema);
  const sm = await kv.jsm.streams.getMessage(kv.stream, { last_by_subj: kv.fullKeyName(kv.encodeKey(key)) }).catch((e: unknown) => {
    if (e instanceof JetStreamApiError && /no message found/i.test(e.message)) return null;
    return noQuorum(kv, 'read', key)(e);
  });
  return versioned(key, sm ? kv.smToEntry(sm) : null, schema);
}

/**
 * How long a write waits for a bucket's stream to get a leader while JetStream itself has quorum:
 * after a partition heals, the returning server's higher raft term makes the leaders step down,
 * and a write finds no responder for the ~10 s the elections take (measured on the simulated
 * mesh). Cut off from most of the mesh, JetStream has no quorum and the write fails at once.
 */
export const ELECTION_WAIT_MS = 8000;
/** How long the check that JetStream has quorum may take (its API answers within ms when it has). */
const QUORUM_CHECK_MS = 1000;

/** A write that found no responder for the whole of ELECTION_WAIT_MS, though JetStream had quorum. */
class LeaderlessError extends Error {}

/**
 * Runs a write; while it finds no responder (the bucket's stream has no leader) but JetStream's
 * API answers (a meta leader, so quorum), waits for the election and tries again, up to
 * ELECTION_WAIT_MS. Only no-responders is retried: a timeout may have been a write that took.
 */
async function whenLed<T>(kv: KV, write: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  for (let delay = 250; ; delay = Math.min(delay * 2, 1000)) {
    try {
      return await write();
    } catch (e) {
      if (!isNoResponders(e) || !(kv instanceof Bucket)) throw e;
      if (Date.now() - t0 + delay > ELECTION_WAIT_MS) throw new LeaderlessError(`no leader after ${((Date.now() - t0) / 1000).toFixed(1)} s`, { cause: e });
      if (!(await jetStreamHasQuorum(kv))) throw e;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

async function jetStreamHasQuorum(kv: Bucket): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), QUORUM_CHECK_MS)));
  try {
    return await Promise.race([kv.jsm.getAccountInfo().then(() => true, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Creates `key` only if it does not exist: the primitive every claim is built on. */
export async function kvCreate(kv: KV, key: string, value: unknown): Promise<number> {
  // The client's kv.create reads the key after any failure, so a write that found no leader would
  // end in that read's timeout instead: its expected-revision-0 put is done here, the read only
  // when the key exists.
  try {
    return await whenLed(kv, () => kv.put(key, encodeJson(value), { previousSeq: 0 }));
  } catch (e) {
    if (!isCasFailure(e)) return noQuorum(kv, 'create', key)(e);
    // A deleted key keeps its delete marker: creating it again replaces the marker.
    const marker = await kv.get(key).catch(noQuorum(kv, 'read', key));
    if (marker && marker.operation !== 'PUT') return kvUpdate(kv, key, value, marker.revision);
    throw new ConflictError(`${key} already exists`, { cause: e });
  }
}

/** Replaces `key` only if it is still at `revision`. */
export async function kvUpdate(kv: KV, key: string, value: unknown, revision: number): Promise<number> {
  try {
    return await whenLed(kv, () => kv.update(key, encodeJson(value), revision));
  } catch (e) {
    if (isCasFailure(e)) throw new ConflictError(`${key} changed under us (expected revision ${revision})`, { cause: e });
    return noQuorum(kv, 'update', key)(e);
  }
}

/** Deletes `key` only if it is still at `revision` (or unconditionally without one). */
export async function kvDelete(kv: KV, key: string, revision?: number): Promise<void> {
  try {
    await whenLed(kv, () => kv.delete(key, revision === undefined ? undefined : { previousSeq: revision }));
  } catch (e) {
    if (isCasFailure(e)) throw new ConflictError(`${key} changed under us (expected revision ${revision})`, { cause: e });
    noQuorum(kv, 'delete', key)(e);
  }
}

export type Mutation<T> = { put: T } | { delete: true } | { keep: true };

export interface Written<R> {
  result: R;
  /** The revision this write created; null when the key was kept, or deleted (KV does not report a delete's revision). */
  revision: number | null;
}

/**
 * Compare-and-set loop: reads the key, asks `decide` what it should become, writes it only if
 * nobody wrote in between, and retries from a fresh read if somebody did. `decide` must be pure.
 */
export async function kvMutate<T extends z.ZodType, R>(
  kv: KV,
  key: string,
  schema: T,
  decide: (current: z.output<T> | null) => { change: Mutation<z.output<T>>; result: R },
  attempts = 20,
): Promise<R> {
  return (await kvMutateWithRevision(kv, key, schema, decide, attempts)).result;
}

/** kvMutate that also says which revision it wrote, for a reader that must see its own write. */
export async function kvMutateWithRevision<T extends z.ZodType, R>(
  kv: KV,
  key: string,
  schema: T,
  decide: (current: z.output<T> | null) => { change: Mutation<z.output<T>>; result: R },
  attempts = 20,
): Promise<Written<R>> {
  for (let i = 0; i < attempts; i++) {
    const cur = await kvGet(kv, key, schema);
    const { change, result } = decide(cur?.value ?? null);
    try {
      if ('keep' in change) return { result, revision: null };
      if ('delete' in change) {
        if (cur) await kvDelete(kv, key, cur.revision);
        return { result, revision: null };
      }
      const revision = cur ? await kvUpdate(kv, key, change.put, cur.revision) : await kvCreate(kv, key, change.put);
      return { result, revision };
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
    }
  }
  throw new ConflictError(`${key}: gave up after ${attempts} concurrent updates`);
}

/** All keys matching `filter` (NATS subject wildcards). */
export async function kvKeys(kv: KV, filter = '>'): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const k of await kv.keys(filter)) out.push(k);
  } catch (e) {
    noQuorum(kv, 'list', filter)(e);
  }
  return out;
}

/**
 * What a KV operation that no stream leader answered means, in words that name it. The client's
 * own are misleading ("jetstream is not enabled" for a write nobody took: JetStream is on, the
 * bucket was opened, but no server this one reaches leads the bucket's stream now) or bare
 * ("timeout"). In a cluster both mean the replicas this host's nats-server reaches are not a
 * majority: the host is cut off from most of the mesh (a partition), or a leader is being elected.
 * Those failures become UnavailableError saying so; anything else is rethrown as it was.
 */
export function noQuorum(kv: KV, op: string, key: string): (e: unknown) => never {
  return (e) => {
    const found = noQuorumReason(e);
    if (!found) throw e;
    const bucket = (kv as { bucket?: string }).bucket ?? 'KV';
    // The cause kept is the plain one (no responders, timeout): messages quote the causes too.
    throw new UnavailableError(`KV bucket ${bucket}: cannot ${op} ${key}: ${found.why}`, { cause: found.cause });
  };
}

const errorChain = (e: unknown): Error[] => {
  const chain: Error[] = [];
  for (let cur: unknown = e; cur instanceof Error && chain.length < 8; cur = cur.cause) chain.push(cur);
  return chain;
};

/** JetStreamNotEnabled is what the client makes of a publish that found no responder. */
const isNoResponders = (e: unknown): boolean =>
  errorChain(e).some((c) => c instanceof jserrors.JetStreamNotEnabled || c instanceof NoRespondersError || (c instanceof RequestError && c.isNoResponders()));

function noQuorumReason(e: unknown): { why: string; cause: unknown } | null {
  const chain = errorChain(e);
  if (e instanceof LeaderlessError) {
    return {
      why: `no leader for the bucket (${e.message}), though JetStream has quorum: a leader election is under way, as after the mesh heals from a partition; retry shortly`,
      cause: chain.find((c) => c instanceof NoRespondersError) ?? e.cause,
    };
  }
  if (isNoResponders(e)) {
    return {
      why:
        "no quorum: no server this host's nats-server reaches leads the bucket now, and JetStream has no leader either (is this host " +
        'cut off from most of the mesh? Right after a partition heals, the servers elect leaders for some 15 s)',
      cause: chain.find((c) => c instanceof NoRespondersError) ?? e,
    };
  }
  const timeout = chain.find((c) => c instanceof TimeoutError);
  if (timeout) {
    return { why: "no quorum answered in time: the bucket's leader did not reply (this host cut off from most of the mesh, or a leader election under way)", cause: timeout };
  }
  // 10008: "JetStream system temporarily unavailable", what the API says while it has no leader.
  const api = chain.find((c): c is JetStreamApiError => c instanceof JetStreamApiError && (c.code === 10008 || c.status === 503));
  if (api) return { why: `no quorum: JetStream says "${api.message}" (no leader for the bucket among the servers reachable from here)`, cause: api };
  return null;
}

function isCasFailure(e: unknown): boolean {
  // 10071: wrong last sequence (update/delete by revision, and create of an existing key).
  for (let cur: unknown = e; cur instanceof Error; cur = cur.cause) {
    if (cur instanceof JetStreamApiError && cur.code === 10071) return true;
    if (/wrong last sequence|key exists/i.test(cur.message)) return true;
  }
  return false;
}
