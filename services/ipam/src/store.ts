import type { NatsConnection } from '@nats-io/nats-core';
import { KV, kvCreate, kvDelete, kvGet, kvKeys, KvMirrorOptions, kvMutateWithRevision, mirrorKeys, Mutation, openBucket, Versioned, Written } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { ConflictError, UnavailableError, WeaveError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';
import { BlockRecord, LeaseRecord, PoolRecord } from './core/records';

/**
 * IPAM state: one table per JetStream KV bucket. Every claim is a create-if-absent and every
 * change a compare-and-set on the revision, so two hosts (or two processes of one host) can never
 * both win. There is deliberately no unconditional put or delete here.
 */
export interface Table<T> {
  readonly name: string;
  get(key: string): Promise<Versioned<T> | null>;
  /** Keys directly below `parent` (`parent.*`), or every key, listed from KV as they are now. */
  keys(parent?: string): Promise<string[]>;
  /** Creates `key` and returns its revision; null when it exists already (someone else holds it). */
  create(key: string, value: T): Promise<number | null>;
  /** Read, decide, write by revision; re-decides on a fresh read when someone wrote in between. */
  mutate<R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }): Promise<Written<R>>;
  /** Deletes `key` if it is still at `revision`; false when it changed or is gone. */
  deleteAt(key: string, revision: number): Promise<boolean>;
}

/**
 * A table's keys held in memory and kept current by a watch, so a request reads them without a
 * round trip. They can lag other hosts' writes by the watch's delay; `caughtUp` bounds that.
 */
export interface KeySet {
  /** Resolves once the first complete snapshot is in. */
  ready(): Promise<void>;
  /** Resolves once every write up to `revision` (of this table) is reflected; unavailable if that takes too long. */
  caughtUp(revision: number): Promise<void>;
  keys(): string[];
}

export interface IpamStore {
  pools: Table<PoolRecord>;
  blocks: Table<BlockRecord>;
  leases: Table<LeaseRecord>;
  /** Every pool key of the mesh: the overlap check and the choice of default subnets read these. */
  poolKeys: KeySet;
  /** Stops the watches. */
  close(): Promise<void>;
}

export interface Entry<T> extends Versioned<T> {
  key: string;
}

/** Every child of `parent` with its value; a key deleted between listing and reading is skipped. */
export async function entries<T>(t: Table<T>, parent: string): Promise<Array<Entry<T>>> {
  const out: Array<Entry<T>> = [];
  for (const key of await t.keys(parent)) {
    const e = await t.get(key);
    if (e) out.push({ key, ...e });
  }
  return out;
}

/**
 * Blocks and leases are still listed per call (`entries`, views): those listings are of one pool's
 * children and must be complete when a pool is torn down, which a watch of another bucket cannot
 * promise without asking the server for its last revision anyway. Only the pool keys, read on
 * every RequestPool, come from a watch.
 */
export async function openIpamStore(
  nc: NatsConnection,
  replicas: number,
  log: Logger,
  watch: Pick<KvMirrorOptions, 'waitMs' | 'reopenMs'> = {},
): Promise<IpamStore> {
  const bucket = (name: string) => openBucket(nc, name, { replicas });
  const [pools, blocks, leases] = await Promise.all([bucket(Buckets.ipamPools), bucket(Buckets.ipamBlocks), bucket(Buckets.ipamLeases)]);
  // Not awaited: a watch slow to start delays the first RequestPool (which waits for it), not the service.
  const poolKeys = mirrorKeys(pools, { log, ...watch });
  return {
    pools: new KvTable(Buckets.ipamPools, pools, PoolRecord),
    blocks: new KvTable(Buckets.ipamBlocks, blocks, BlockRecord),
    leases: new KvTable(Buckets.ipamLeases, leases, LeaseRecord),
    poolKeys,
    close: () => poolKeys.stop(),
  };
}

class KvTable<T> implements Table<T> {
  constructor(
    readonly name: string,
    private readonly kv: KV,
    private readonly schema: z.ZodType<T>,
  ) {}

  get(key: string) {
    return this.guard('read', key, () => kvGet(this.kv, key, this.schema));
  }
  keys(parent?: string) {
    return this.guard('list', parent ?? '>', () => kvKeys(this.kv, parent === undefined ? '>' : `${parent}.*`));
  }
  create(key: string, value: T) {
    return this.guard('create', key, () => kvCreate(this.kv, key, value).then((rev): number | null => rev, ifConflict(null)));
  }
  mutate<R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }) {
    return this.guard('update', key, () => kvMutateWithRevision(this.kv, key, this.schema, decide));
  }
  deleteAt(key: string, revision: number) {
    return this.guard('delete', key, () => kvDelete(this.kv, key, revision).then(() => true, ifConflict(false)));
  }

  /** Our own errors pass; anything else is NATS failing, which a retry later may fix. */
  private async guard<R>(op: string, key: string, f: () => Promise<R>): Promise<R> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof WeaveError) throw e;
      throw new UnavailableError(`JetStream KV ${this.name}: ${op} ${key} failed`, { cause: e });
    }
  }
}

const ifConflict =
  <R>(value: R) =>
  (e: unknown): R => {
    if (e instanceof ConflictError) return value;
    throw e;
  };
