import type { NatsConnection } from '@nats-io/nats-core';
import { KV, kvCreate, kvDelete, kvGet, kvGetFromLeader, KvMirrorOptions, kvMutateWithRevision, mirrorKeys, mirrorKv, Mutation, openBucket, Versioned, Written } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { ConflictError, UnavailableError, WeaveError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';
import { HostRecord } from './core/hosts';
import { BlockRecord, LeaseRecord, PoolRecord } from './core/records';
import { UlaRecord } from './core/ula';

/**
 * IPAM state: one table per JetStream KV bucket. Every claim is a create-if-absent and every
 * change a compare-and-set on the revision, so two hosts (or two processes of one host) can never
 * both win. There is deliberately no unconditional put or delete here, and no listing: which keys
 * exist comes from the mirrors (see IpamStore).
 */
export interface Table<T> {
  readonly name: string;
  get(key: string): Promise<Versioned<T> | null>;
  /** Like `get`, from the bucket's leader: sees every write already acknowledged (see kvGetFromLeader). */
  getFromLeader?(key: string): Promise<Versioned<T> | null>;
  /** Creates `key` and returns its revision; null when it exists already (someone else holds it). */
  create(key: string, value: T): Promise<number | null>;
  /** Read, decide, write by revision; re-decides on a fresh read when someone wrote in between. */
  mutate<R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }): Promise<Written<R>>;
  /** Deletes `key` if it is still at `revision`; false when it changed or is gone. */
  deleteAt(key: string, revision: number): Promise<boolean>;
}

/**
 * A table's keys held in memory and kept current by a watch, so a request reads them without a
 * round trip. They can lag other hosts' writes by the watch's delay; `caughtUp` and `upToDate`
 * bound that.
 */
export interface KeySet {
  /** Resolves once the first complete snapshot is in. */
  ready(): Promise<void>;
  /** Resolves once every write up to `revision` (of this table) is reflected; unavailable if that takes too long. */
  caughtUp(revision: number): Promise<void>;
  /** Resolves once every write the table had when called is reflected (one round trip, no consumer). */
  upToDate(): Promise<void>;
  /** Every key, or only the direct children of `parent` (`parent.*`). */
  keys(parent?: string): string[];
}

/** A KeySet with each key's value and revision. */
export interface Mirror<T> extends KeySet {
  get(key: string): Versioned<T> | undefined;
}

export interface IpamStore {
  pools: Table<PoolRecord>;
  blocks: Table<BlockRecord>;
  leases: Table<LeaseRecord>;
  /** One record per ipam host: its epoch and lease (see core/hosts.ts). */
  hosts: Table<HostRecord>;
  /** Chosen once for the whole mesh, by whoever creates the key first: the IPv6 ULA prefix (key `ula`). */
  mesh: Table<UlaRecord>;
  /**
   * What this host knows of each table, from one watch per bucket started with the service.
   * Listing keys instead would create a JetStream consumer per request, and in a freshly formed
   * cluster creating one can stall for half a minute: after the start, no request creates one.
   * The mirrors are hints, the tables the truth: every claim is still a create or CAS on KV.
   */
  mirrors: { pools: KeySet; blocks: Mirror<BlockRecord>; leases: Mirror<LeaseRecord>; hosts: Mirror<HostRecord> };
  /** Stops the watches. */
  close(): Promise<void>;
}

export interface Entry<T> extends Versioned<T> {
  key: string;
}

/** The children of `parent` with their values, as the mirror has them now. */
export function children<T>(m: Mirror<T>, parent: string): Array<Entry<T>> {
  return m.keys(parent).flatMap((key) => {
    const e = m.get(key);
    return e ? [{ key, ...e }] : [];
  });
}

export async function openIpamStore(
  nc: NatsConnection,
  replicas: number,
  log: Logger,
  watch: Pick<KvMirrorOptions, 'waitMs' | 'reopenMs'> = {},
): Promise<IpamStore> {
  const bucket = (name: string) => openBucket(nc, name, { replicas });
  const [pools, blocks, leases, hosts, mesh] = await Promise.all([
    bucket(Buckets.ipamPools),
    bucket(Buckets.ipamBlocks),
    bucket(Buckets.ipamLeases),
    bucket(Buckets.ipamHosts),
    bucket(Buckets.ipamMesh),
  ]);
  // Not awaited: a watch slow to start delays the first request that needs it (which waits for
  // it), not the service.
  const o = { log, ...watch };
  const mirrors = {
    pools: mirrorKeys(pools, o),
    blocks: mirrorKv(blocks, BlockRecord, o),
    leases: mirrorKv(leases, LeaseRecord, o),
    hosts: mirrorKv(hosts, HostRecord, o),
  };
  return {
    pools: new KvTable(Buckets.ipamPools, pools, PoolRecord),
    blocks: new KvTable(Buckets.ipamBlocks, blocks, BlockRecord),
    leases: new KvTable(Buckets.ipamLeases, leases, LeaseRecord),
    hosts: new KvTable(Buckets.ipamHosts, hosts, HostRecord),
    mesh: new KvTable(Buckets.ipamMesh, mesh, UlaRecord),
    mirrors,
    close: async () => {
      await Promise.all(Object.values(mirrors).map((m) => m.stop()));
    },
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
  getFromLeader(key: string) {
    return this.guard('read', key, () => kvGetFromLeader(this.kv, key, this.schema));
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
