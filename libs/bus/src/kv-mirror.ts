import { DeliverPolicy, type ConsumerMessages, type JsMsg, type PushConsumer } from '@nats-io/jetstream';
import type { NatsConnection, Status } from '@nats-io/nats-core';
import { Bucket, type KV } from '@nats-io/kv';
import { describeError, InternalError, UnavailableError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';
import { decodeJson } from './json';
import type { Versioned } from './kv';

export interface KvMirrorOptions {
  /** The keys to follow, as a NATS subject filter: `>` (the default) for all, `a.*` for a's children. */
  filter?: string;
  log: Logger;
  /** How long `ready` and `caughtUp` wait before they fail as unavailable. */
  waitMs?: number;
  /** The pause before a failed watch is opened again. */
  reopenMs?: number;
}

/** What one message of the watch does to a key: a value to hold, or its removal. */
type Decode<T> = (key: string, revision: number, data: Uint8Array) => T | undefined;

/**
 * The keys of a KV bucket (and their values, when a schema is given), kept current in memory from
 * one long-lived watch instead of a listing per request: a listing creates a JetStream consumer
 * each time, and in a freshly formed cluster one such creation can stall for half a minute.
 */
export function mirrorKv<T>(kv: KV, schema: z.ZodType<T>, o: KvMirrorOptions): KvMirror<T> {
  return new KvMirror<T>(asBucket(kv), (key, revision, data) => {
    const parsed = parseJson(data, schema);
    if (parsed.success) return parsed.data;
    o.log.warn({ key, revision }, `KV key ${key} holds data that does not match its schema; the mirror leaves it out: ${parsed.error}`);
    return undefined;
  }, o);
}

/** Keys only: the server sends no values at all. */
export function mirrorKeys(kv: KV, o: KvMirrorOptions): KvMirror<null> {
  return new KvMirror<null>(asBucket(kv), null, o);
}

/**
 * A watch that delivers the latest entry of every key (deletions included) in revision order,
 * then every change as it lands. The first complete snapshot makes the mirror ready. When the
 * watch fails (its consumer deleted, heartbeats lost, the connection to NATS re-established, the
 * consumer not creatable yet), it is opened again with a fresh snapshot, which replaces the old
 * one only once complete; until then the old one is served, stale but whole.
 *
 * Read-your-writes: revisions are the bucket stream's sequence numbers and the watch applies them
 * in order, so a mirror that has applied revision R reflects every write up to R. A caller that
 * wrote a key it follows waits for `caughtUp(itsRevision)` before reading.
 */
export class KvMirror<T> {
  private current = new Map<string, Versioned<T>>();
  /** The highest revision the current map reflects. */
  private applied = 0;
  private isReady = false;
  private stopped = false;
  private stoppedWhy = '';
  private readonly waiters = new Set<{ revision: number; settle: (err?: Error) => void }>();
  private readonly listeners = new Set<() => void>();
  /** Ends the current watch; set while one runs. */
  private endWatch: ((why: string) => void) | null = null;
  private wake: (() => void) | null = null;
  /** Watches ended since the last complete snapshot: the pause before the next one grows with them. */
  private failures = 0;
  private readonly connection: NatsConnection;
  private readonly status: AsyncIterable<Status> & { stop?: () => void };
  private readonly subject: string;
  private readonly loop: Promise<void>;

  constructor(
    private readonly bucket: Bucket,
    private readonly decode: Decode<T> | null,
    private readonly o: KvMirrorOptions,
  ) {
    const filter = o.filter ?? '>';
    bucket.validateSearchKey(filter);
    this.subject = bucket.fullKeyName(bucket.encodeKey(filter));
    this.connection = connectionOf(bucket);
    this.status = this.connection.status();
    void this.followReconnects();
    this.loop = this.run();
  }

  /** The bucket's name, for messages. */
  get name(): string {
    return this.bucket.bucket;
  }

  /** Resolves once the first snapshot is complete. */
  ready(timeoutMs?: number): Promise<void> {
    return this.caughtUp(0, timeoutMs);
  }

  /** Resolves once the mirror reflects every write up to `revision` (of a key it follows). */
  caughtUp(revision: number, timeoutMs = this.o.waitMs ?? 5000): Promise<void> {
    if (this.stopped) return Promise.reject(new UnavailableError(`the mirror of KV bucket ${this.name} ${this.stoppedWhy}`));
    if (this.reached(revision)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        revision,
        settle: (err?: Error) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          if (err) reject(err);
          else resolve();
        },
      };
      const timer = setTimeout(() => waiter.settle(this.late(revision, timeoutMs)), timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /**
   * Resolves once the mirror reflects every write the bucket had when this was called: for a
   * reader that needs all keys, not just its own writes (a teardown listing a parent's children).
   * It asks the stream for its last sequence, the bucket's last revision: a request the stream's
   * leader answers, like any write, and no consumer is created. Whole-bucket mirrors only, since
   * the last revision may be of a key a filtered mirror never sees. The message of the last
   * revision is the latest entry of its key (a deletion leaves a marker), so the watch delivers
   * it; only removing messages behind KV's back (purgeDeletes, a stream purge) could take it away,
   * and then this waits for the next write or times out as unavailable.
   */
  async upToDate(timeoutMs?: number): Promise<void> {
    if ((this.o.filter ?? '>') !== '>') throw new InternalError(`the mirror of KV bucket ${this.name} follows only ${this.o.filter}, so it cannot tell it has every write`);
    await this.caughtUp(await this.lastRevision(), timeoutMs);
  }

  private async lastRevision(): Promise<number> {
    try {
      return (await this.bucket.jsm.streams.info(this.bucket.stream)).state.last_seq;
    } catch (e) {
      throw new UnavailableError(`cannot read the last revision of JetStream KV bucket ${this.name}`, { cause: e });
    }
  }

  /** The keys as of the last change applied (`parent`: only its direct children). */
  keys(parent?: string): string[] {
    const all = [...this.current.keys()];
    if (parent === undefined) return all;
    return all.filter((k) => k.startsWith(`${parent}.`) && !k.slice(parent.length + 1).includes('.'));
  }

  get(key: string): Versioned<T> | undefined {
    return this.current.get(key);
  }

  entries(): Array<[string, Versioned<T>]> {
    return [...this.current.entries()];
  }

  /** The highest revision applied: everything up to it is reflected. */
  get revision(): number {
    return this.applied;
  }

  /** Calls `fn` after every change, and after a reopened watch replaced the snapshot. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async stop(): Promise<void> {
    this.halt('was stopped');
    await this.loop;
  }

  private halt(why: string): void {
    this.stopped = true;
    this.stoppedWhy = why;
    this.endWatch?.('stopped');
    this.wake?.();
    this.status.stop?.();
    for (const w of [...this.waiters]) w.settle(new UnavailableError(`the mirror of KV bucket ${this.name} ${why}`));
  }

  private reached(revision: number): boolean {
    return this.isReady && this.applied >= revision;
  }

  private late(revision: number, ms: number): UnavailableError {
    const what = this.isReady ? `has not caught up with revision ${revision} (it is at ${this.applied})` : 'has no complete snapshot yet';
    return new UnavailableError(`the watch of JetStream KV bucket ${this.name} ${what} after ${ms} ms`);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let why: string;
      try {
        why = await this.follow();
      } catch (err) {
        why = `it failed: ${describeError(err)}`;
      }
      if (this.stopped) return;
      // Closed, not just disconnected: nothing will come back, so stop instead of retrying for ever.
      if (this.connection.isClosed()) return this.halt('stopped: its NATS connection was closed');
      const pause = Math.min((this.o.reopenMs ?? 500) * 2 ** this.failures++, 5000);
      this.o.log.warn({ bucket: this.name, filter: this.o.filter ?? '>', pauseMs: pause }, `watch of KV bucket ${this.name} ended (${why}); opening it again`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, pause).unref();
      });
      this.wake = null;
    }
  }

  /** One watch, from its snapshot until it ends; resolves with the reason it ended. */
  private async follow(): Promise<string> {
    const oc = await this.bucket.js.consumers.getPushConsumer(this.bucket.stream, {
      filter_subjects: this.subject,
      deliver_policy: DeliverPolicy.LastPerSubject,
      headers_only: this.decode === null,
    });
    try {
      if (this.stopped) return 'stopped';
      return await this.consume(oc);
    } finally {
      // Best effort: an ephemeral consumer nobody listens to is removed by the server anyway.
      void oc.delete().catch(() => undefined);
    }
  }

  private async consume(oc: PushConsumer): Promise<string> {
    let name = (await oc.info(true)).name;
    const next = new Map<string, Versioned<T>>();
    // The snapshot is the last entry of each key as of the consumer's creation, so it is complete
    // after that many messages, or at a message with nothing pending behind it.
    const expected = (await oc.info(true)).num_pending;
    let seen = 0;
    let top = 0;
    let live = false;
    const goLive = (): void => {
      live = true;
      this.current = next;
      // A snapshot taken after revision R reflects R even if R's own message is gone (superseded).
      this.applied = Math.max(this.applied, top);
      this.isReady = true;
      this.failures = 0;
      this.changed();
    };
    const msgs = await oc.consume({
      callback: (m) => {
        seen++;
        top = Math.max(top, m.seq);
        this.apply(next, m);
        if (live) {
          this.applied = Math.max(this.applied, top);
          this.changed();
        } else if (seen >= expected || m.info.pending === 0) goLive();
      },
    });
    if (expected === 0) goLive();
    const deleted = this.connection.subscribe(consumerDeletedSubject(this.bucket.stream), {
      callback: (_, m) => {
        const advisory = ConsumerDeleted.safeParse(parseOrNull(m.data));
        if (advisory.success && advisory.data.consumer === name) this.endWatch?.(`its consumer ${name} was deleted`);
      },
    });
    try {
      return await this.untilEnded(msgs, (n) => (name = n));
    } finally {
      this.endWatch = null;
      deleted.unsubscribe();
      msgs.stop();
    }
  }

  private untilEnded(msgs: ConsumerMessages, renamed: (name: string) => void): Promise<string> {
    return new Promise((resolve) => {
      this.endWatch = resolve;
      if (this.stopped) resolve('stopped');
      void msgs.closed().then((err) => resolve(err ? `its messages stopped: ${describeError(err)}` : 'its messages stopped'));
      void (async () => {
        for await (const s of msgs.status()) {
          // The ordered consumer replaces its consumer after a gap; that one is ours now.
          if (s.type === 'ordered_consumer_recreated') renamed(s.name);
          // It would also recover from these, but only after two missed heartbeats (a minute).
          if (s.type === 'heartbeats_missed' || s.type === 'stream_not_found') resolve(`its consumer reported ${s.type}`);
        }
      })();
    });
  }

  /**
   * After a reconnect the consumer may be gone (a restarted server) or may have pushed messages
   * into the gap, which the ordered consumer only notices at the next message: start afresh.
   */
  private async followReconnects(): Promise<void> {
    for await (const s of this.status) {
      if (s.type === 'reconnect') this.endWatch?.('the connection to NATS was re-established');
    }
  }

  private apply(into: Map<string, Versioned<T>>, m: JsMsg): void {
    const e = this.bucket.jmToWatchEntry(m, false);
    if (e.operation !== 'PUT') {
      into.delete(e.key);
      return;
    }
    const value = this.decode === null ? (null as T) : this.decode(e.key, e.revision, e.value);
    if (value === undefined) into.delete(e.key);
    else into.set(e.key, { value, revision: e.revision });
  }

  private changed(): void {
    for (const w of [...this.waiters]) if (this.reached(w.revision)) w.settle();
    for (const fn of [...this.listeners]) {
      try {
        fn();
      } catch (err) {
        this.o.log.error({ err, bucket: this.name }, 'a KV mirror listener threw');
      }
    }
  }
}

/**
 * The server announces a deleted consumer here (a push consumer itself hears nothing, and would
 * wait two missed heartbeats, a minute, before recreating it). NATS's own subject, not ours.
 */
const consumerDeletedSubject = (stream: string): string => `$JS.EVENT.ADVISORY.CONSUMER.DELETED.${stream}.*`;
const ConsumerDeleted = z.looseObject({ stream: z.string(), consumer: z.string() });

function parseOrNull(data: Uint8Array): unknown {
  try {
    return decodeJson(data);
  } catch {
    return null;
  }
}

function asBucket(kv: KV): Bucket {
  if (kv instanceof Bucket) return kv;
  throw new InternalError('a KV mirror needs a bucket opened with @nats-io/kv (openBucket)');
}

/** The connection under the bucket's JetStream client, whose status tells of reconnects. */
function connectionOf(bucket: Bucket): NatsConnection {
  const js = bucket.js as unknown as { getConnection?: () => NatsConnection };
  if (typeof js.getConnection !== 'function') throw new InternalError('the KV bucket has no NATS connection to follow');
  return js.getConnection();
}

function parseJson<T>(data: Uint8Array, schema: z.ZodType<T>): { success: true; data: T } | { success: false; error: string } {
  try {
    const r = schema.safeParse(decodeJson(data));
    return r.success ? { success: true, data: r.data } : { success: false, error: z.prettifyError(r.error) };
  } catch (e) {
    return { success: false, error: describeError(e) };
  }
}
