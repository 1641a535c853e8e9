import type { PoolStatus } from '@weave/contracts';
import { Cidr, contains, formatCidr, parseCidr } from '@weave/netaddr';
import type { z } from 'zod';
import type { PoolRecord } from './records';
import { blockOf, capacity } from './space';

/** One pool as `status` reports it: holders, and each claimed block with how much of it is leased. */
export function poolStatus(record: PoolRecord, blocks: ReadonlyArray<{ base: bigint; owner: string }>, leased: readonly bigint[]): z.output<typeof PoolStatus> {
  const pool = parseCidr(record.pool);
  const range = record.subPool ? parseCidr(record.subPool) : pool;
  const used = (b: Cidr) => leased.filter((v) => contains(b, { family: b.family, value: v })).length;
  return {
    poolId: record.poolId,
    pool: record.pool,
    subPool: record.subPool,
    gateway: record.gateway,
    holders: record.holders,
    blocks: [...blocks]
      .sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0))
      .map(({ base, owner }) => {
        const block = blockOf(range, record.blockSize, base);
        return { block: formatCidr(block), owner, used: used(block), size: Number(capacity(block, pool)) };
      }),
  };
}
