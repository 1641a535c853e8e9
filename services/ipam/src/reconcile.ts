import type { ReconcileHostRequest, ReconcileHostResult } from '@weave/contracts';
import { Cidr, contains, formatIp, parseCidr, parseIp } from '@weave/netaddr';
import type { KeyedMutex } from '@weave/sync';
import type { z } from 'zod';
import { cidrOfPoolKey, leaseKey, parsePoolId, poolKey, valueOfChildKey } from './core/keys';
import { LeaseEntry, leaseVerdict, planLeaseSweep, planPoolSweep, poolVerdict } from './core/reconcile';
import type { PoolRecord } from './core/records';
import type { IpamDeps } from './deps';
import type { Pools } from './pools';
import { children } from './store';
import type { Views } from './views';

type Request = z.output<typeof ReconcileHostRequest>;
type Result = z.output<typeof ReconcileHostResult>;

/**
 * Releases this host's endpoint leases and pool references that Docker does not have (see
 * leaseVerdict and poolVerdict for which and why). Each pool is swept under the pool's lock, so
 * no request of this process changes it meanwhile, and everything is decided again on a fresh
 * read and changed by revision: a lease the mirror showed that was released and leased again
 * since is never taken.
 */
export class HostSweeper {
  private readonly startedAt: Date;

  constructor(
    private readonly d: IpamDeps,
    private readonly views: Views,
    private readonly pools: Pools,
    private readonly lock: KeyedMutex,
  ) {
    this.startedAt = d.now();
  }

  async sweep(req: Request): Promise<Result> {
    const olderThan = new Date(req.olderThan);
    const out: Result = { released: [], releasedPools: [], spared: 0 };
    for (const p of req.pools) {
      const pool = parseCidr(p.subnet);
      const key = poolKey(pool);
      const keep = addressesIn(pool, p.keep);
      const r = await this.lock.run(key, () => this.sweepPool(key, pool, keep, olderThan));
      out.released.push(...r.released);
      out.spared += r.spared;
    }
    const docker = new Set(req.pools.map((p) => poolKey(parseCidr(p.subnet))));
    const pools = await this.sweepPools(docker, olderThan);
    out.releasedPools = pools.released;
    out.spared += pools.spared;
    if (out.released.length + out.releasedPools.length > 0) {
      this.d.log.info({ ...out }, 'released leases and pool references Docker does not have');
      this.d.events.publish('leases.reconciled', out);
    }
    return out;
  }

  private async sweepPools(docker: ReadonlySet<string>, olderThan: Date): Promise<{ released: Result['releasedPools']; spared: number }> {
    const context = { host: this.d.host, docker, olderThan, unknownAge: this.startedAt };
    const m = this.d.store.mirrors.pools;
    await m.upToDate();
    const held: Array<{ key: string; record: PoolRecord }> = [];
    for (const key of m.keys()) {
      const record = cidrOfPoolKey(key) && (await this.d.store.pools.get(key))?.value;
      if (record) held.push({ key, record });
    }
    const plan = planPoolSweep({ ...context, pools: held });
    const released: Result['releasedPools'] = [];
    for (const p of plan.release) {
      const done = await this.lock.run(p.key, async () => {
        const now = (await this.d.store.pools.get(p.key))?.value;
        if (!now || now.poolId !== p.record.poolId || poolVerdict({ key: p.key, record: now }, context) !== 'release') return false;
        await this.pools.release(parsePoolId(now.poolId), now.poolId);
        return true;
      });
      if (done) released.push({ poolId: p.record.poolId, pool: p.record.pool });
    }
    return { released, spared: plan.spared };
  }

  private async sweepPool(key: string, pool: Cidr, keep: ReadonlySet<bigint>, olderThan: Date): Promise<Pick<Result, 'released' | 'spared'>> {
    const record = (await this.d.store.pools.get(key))?.value;
    // No such pool (any more): nothing of ours can be in it that its teardown does not remove.
    if (!record) return { released: [], spared: 0 };
    const mirror = this.d.store.mirrors.leases;
    await mirror.upToDate();
    const leases = children(mirror, key).flatMap((e): LeaseEntry[] => {
      const address = valueOfChildKey(pool, e.key);
      return address === null ? [] : [{ address, value: e.value, revision: e.revision }];
    });
    const keptBefore = new Date(this.d.now().getTime() - (this.d.config.keepMs ?? 0));
    const context = { host: this.d.host, keep, olderThan, keptBefore };
    const plan = planLeaseSweep({ ...context, leases });
    const released: Result['released'] = [];
    for (const l of plan.release) {
      const lkey = leaseKey(pool, l.address);
      const cur = await this.d.store.leases.get(lkey);
      if (!cur || leaseVerdict({ address: l.address, ...cur }, context) !== 'release') continue;
      // False: released (and perhaps leased again) since the read; not ours to drop then.
      if (!(await this.d.store.leases.deleteAt(lkey, cur.revision))) continue;
      const address = formatIp({ family: pool.family, value: l.address });
      released.push({ poolId: record.poolId, address, leasedAt: cur.value.time });
      this.d.events.publish('address.released', { poolId: record.poolId, address });
    }
    // The view's idea of which addresses are used is now stale; it is loaded again on next use.
    if (released.length > 0) this.views.drop(key);
    return { released, spared: plan.spared };
  }
}

/** The addresses of `pool` among Docker's (its other networks' and the other family's are ignored). */
function addressesIn(pool: Cidr, addresses: readonly string[]): Set<bigint> {
  const out = new Set<bigint>();
  for (const a of addresses) {
    const ip = parseIp(a);
    if (contains(pool, ip)) out.add(ip.value);
  }
  return out;
}
