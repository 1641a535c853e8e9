import { NotFoundError } from '@weave/errors';
import { Cidr, parseCidr } from '@weave/netaddr';
import { PoolSpec, poolKey, valueOfChildKey } from './core/keys';
import type { PoolRecord } from './core/records';
import { blockOf } from './core/space';
import type { IpamDeps } from './deps';
import { children } from './store';

/**
 * What this host knows of one pool, so that handing out an address costs one KV create: its own
 * blocks and every address it has seen leased. KV stays the truth (a lease is only ours once its
 * key is created), so a stale view can make us skip a free address, never hand out a taken one.
 * Loaded from the mirrors on first use after a start, dropped when this host joins or leaves the
 * pool.
 */
export interface PoolView {
  readonly key: string;
  readonly poolId: string;
  readonly pool: Cidr;
  /** Where dynamic addresses come from: the ip-range, else the whole pool. */
  readonly range: Cidr;
  /** The record as loaded. Its gen, blockSize and range never change; holders and gateway may. */
  readonly record: PoolRecord;
  /**
   * The host's epoch the view was loaded under: its blocks are those of that epoch, and a view of
   * an older epoch (a reclaim since) is loaded again rather than used.
   */
  readonly epoch: number;
  /** This host's blocks, lowest first. */
  readonly own: Cidr[];
  readonly used: Set<bigint>;
}

export class Views {
  private readonly cache = new Map<string, PoolView>();

  constructor(private readonly d: Pick<IpamDeps, 'store' | 'host' | 'membership'>) {}

  async get(spec: PoolSpec, poolId: string): Promise<PoolView> {
    const key = poolKey(spec.pool);
    const cached = this.cache.get(key);
    if (cached?.poolId === poolId && cached.epoch === this.d.membership.epoch()) return cached;
    const view = await this.load(key, spec.pool, poolId);
    this.cache.set(key, view);
    return view;
  }

  drop(key: string): void {
    this.cache.delete(key);
  }

  /**
   * Re-reads which addresses are leased: other hosts release static addresses in our blocks too.
   * Only before declaring the range full, so it waits for every release made so far.
   */
  async resync(view: PoolView): Promise<void> {
    await this.d.store.mirrors.leases.upToDate();
    view.used.clear();
    for (const v of this.leased(view.key, view.pool)) view.used.add(v);
  }

  /**
   * From the mirrors, once they hold every write made before this call: as complete as the
   * listing this replaced, for one stream info request per bucket (no consumer) once per pool
   * and join. That request goes to the stream leader that the KV writes after it need too.
   */
  private async load(key: string, pool: Cidr, poolId: string): Promise<PoolView> {
    let found = await this.d.store.pools.get(key);
    // The read may come from a replica behind the RequestPool that created the pool a moment ago
    // (Docker asks for the gateway right after it): before saying it does not exist, ask the leader.
    const pools = this.d.store.pools;
    if (!found || found.value.poolId !== poolId) found = await (pools.getFromLeader ? pools.getFromLeader(key) : pools.get(key));
    // A PoolID naming another ip-range than the record is a pool that was removed and re-created.
    if (!found || found.value.poolId !== poolId) throw new NotFoundError(`pool ${poolId} does not exist (was the network removed?)`);
    const record = found.value;
    const epoch = this.d.membership.epoch();
    const range = record.subPool ? parseCidr(record.subPool) : pool;
    const { blocks, leases } = this.d.store.mirrors;
    await Promise.all([blocks.upToDate(), leases.upToDate()]);
    const own = children(blocks, key)
      .filter((b) => b.value.owner === this.d.host && b.value.gen === record.gen && b.value.epoch === epoch)
      .flatMap((b) => {
        const base = valueOfChildKey(pool, b.key);
        return base === null ? [] : [blockOf(range, record.blockSize, base)];
      })
      .sort((a, b) => (a.base < b.base ? -1 : 1));
    return { key, poolId, pool, range, record, epoch, own, used: new Set(this.leased(key, pool)) };
  }

  private leased(key: string, pool: Cidr): bigint[] {
    return this.d.store.mirrors.leases.keys(key).flatMap((k) => {
      const v = valueOfChildKey(pool, k);
      return v === null ? [] : [v];
    });
  }
}
