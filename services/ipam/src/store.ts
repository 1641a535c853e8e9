import { Buckets } from '@weave/contracts';
import { KV, kvCreate, kvDelete, kvGet, kvKeys, kvMutate, Mutation, openBucket } from '@weave/bus';
import { ConflictError } from '@weave/errors';
import type { NatsConnection } from '@nats-io/nats-core';
import { z } from 'zod';

/**
 * IPAM state in three JetStream KV buckets. Every claim is a create-if-absent, every change a
 * compare-and-set on the revision, so two hosts (or two processes of one) can never both win.
 */
export const PoolRecord = z.object({
  pool: z.string(),
  subPool: z.string().nullable(),
  v6: z.boolean(),
  /** How many networks on each host use the pool (one per host in practice). */
  holders: z.record(z.string(), z.number().int().positive()),
});
export type PoolRecord = z.output<typeof PoolRecord>;

export const BlockRecord = z.object({ owner: z.string(), epoch: z.number().int(), claimedAt: z.string() });
export type BlockRecord = z.output<typeof BlockRecord>;

export const LeaseRecord = z.object({ host: z.string(), kind: z.enum(['endpoint', 'gateway', 'aux']), owner: z.string().optional(), time: z.string() });
export type LeaseRecord = z.output<typeof LeaseRecord>;

export interface IpamStore {
  pool(key: string): Promise<PoolRecord | null>;
  poolKeys(): Promise<string[]>;
  mutatePool<R>(key: string, decide: (cur: PoolRecord | null) => { change: Mutation<PoolRecord>; result: R }): Promise<R>;
  deletePool(key: string): Promise<void>;

  blockKeys(poolKey: string): Promise<string[]>;
  block(key: string): Promise<BlockRecord | null>;
  /** False when somebody holds the block already. */
  claimBlock(key: string, b: BlockRecord): Promise<boolean>;
  deleteBlock(key: string): Promise<void>;

  leaseKeys(poolKey: string): Promise<string[]>;
  /** False when the address is taken. */
  claimLease(key: string, l: LeaseRecord): Promise<boolean>;
  deleteLease(key: string): Promise<void>;
}

export async function openIpamStore(nc: NatsConnection, replicas = 1): Promise<IpamStore> {
  const [pools, blocks, leases] = await Promise.all([
    openBucket(nc, Buckets.ipamPools, { replicas }),
    openBucket(nc, Buckets.ipamBlocks, { replicas }),
    openBucket(nc, Buckets.ipamLeases, { replicas }),
  ]);
  return new KvIpamStore(pools, blocks, leases);
}

const claim = async (kv: KV, key: string, value: unknown): Promise<boolean> => {
  try {
    await kvCreate(kv, key, value);
    return true;
  } catch (e) {
    if (e instanceof ConflictError) return false;
    throw e;
  }
};

class KvIpamStore implements IpamStore {
  constructor(
    private readonly pools: KV,
    private readonly blocks: KV,
    private readonly leases: KV,
  ) {}

  async pool(key: string) {
    return (await kvGet(this.pools, key, PoolRecord))?.value ?? null;
  }
  poolKeys() {
    return kvKeys(this.pools);
  }
  mutatePool<R>(key: string, decide: (cur: PoolRecord | null) => { change: Mutation<PoolRecord>; result: R }) {
    return kvMutate(this.pools, key, PoolRecord, decide);
  }
  deletePool(key: string) {
    return kvDelete(this.pools, key);
  }
  blockKeys(poolKey: string) {
    return kvKeys(this.blocks, `${poolKey}.*`);
  }
  async block(key: string) {
    return (await kvGet(this.blocks, key, BlockRecord))?.value ?? null;
  }
  claimBlock(key: string, b: BlockRecord) {
    return claim(this.blocks, key, b);
  }
  deleteBlock(key: string) {
    return kvDelete(this.blocks, key);
  }
  leaseKeys(poolKey: string) {
    return kvKeys(this.leases, `${poolKey}.*`);
  }
  claimLease(key: string, l: LeaseRecord) {
    return claim(this.leases, key, l);
  }
  deleteLease(key: string) {
    return kvDelete(this.leases, key);
  }
}
