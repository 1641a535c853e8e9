import type { NatsConnection } from '@nats-io/nats-core';
import { KV, kvCreate, kvDelete, kvGet, kvKeys, kvMutate, Mutation, openBucket, Versioned } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { ConflictError, UnavailableError, WeaveError } from '@weave/errors';
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
  /** Keys directly below `parent` (`parent.*`), or every key. */
  keys(parent?: string): Promise<string[]>;
  /** Creates `key`; false when it exists already (someone else holds it). */
  create(key: string, value: T): Promise<boolean>;
  /** Read, decide, write by revision; re-decides on a fresh read when someone wrote in between. */
  mutate<R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }): Promise<R>;
  /** Deletes `key` if it is still at `revision`; false when it changed or is gone. */
  deleteAt(key: string, revision: number): Promise<boolean>;
}

export interface IpamStore {
  pools: Table<PoolRecord>;
  blocks: Table<BlockRecord>;
  leases: Table<LeaseRecord>;
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

export async function openIpamStore(nc: NatsConnection, replicas: number): Promise<IpamStore> {
  const open = async <T>(name: string, schema: z.ZodType<T>) => new KvTable(name, await openBucket(nc, name, { replicas }), schema);
  const [pools, blocks, leases] = await Promise.all([
    open(Buckets.ipamPools, PoolRecord),
    open(Buckets.ipamBlocks, BlockRecord),
    open(Buckets.ipamLeases, LeaseRecord),
  ]);
  return { pools, blocks, leases };
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
    return this.guard('create', key, () => kvCreate(this.kv, key, value).then(() => true, ifConflict(false)));
  }
  mutate<R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }) {
    return this.guard('update', key, () => kvMutate(this.kv, key, this.schema, decide));
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
