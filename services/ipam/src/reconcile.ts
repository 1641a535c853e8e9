import type { ReconcileHostRequest, ReconcileHostResult } from '@weave/contracts';
import { Cidr, contains, formatIp, parseCidr, parseIp } from '@weave/netaddr';
import type { KeyedMutex } from '@weave/sync';
import type { z } from 'zod';
import { leaseKey, poolKey, valueOfChildKey } from './core/keys';
import { LeaseEntry, leaseVerdict, planLeaseSweep } from './core/reconcile';
import type { IpamDeps } from './deps';
import { children } from './store';
import type { Views } from './views';

type Request = z.output<typeof ReconcileHostRequest>;
type Result = z.output<typeof ReconcileHostResult>;

/**
 * Releases this host's endpoint leases that Docker does not have (see leaseVerdict for which and
 * why). Each pool is swept under the pool's lock, so no request of this process allocates in it
 * meanwhile, and every lease is decided again on a fresh read and deleted by its revision: a
 * lease the mirror showed that was released and leased again since is never taken.
 */
export class LeaseSweeper {
  constructor(
    private readonly d: IpamDeps,
    private readonly views: Views,
    private readonly lock: KeyedMutex,
  ) {}

  async sweep(req: Request): Promise<Result> {
    const olderThan = new Date(req.olderThan);
    const out: Result = { released: [], spared: 0 };
    for (const p of req.pools) {
      const pool = parseCidr(p.subnet);
      const key = poolKey(pool);
      const keep = addressesIn(pool, p.keep);
      const r = await this.lock.run(key, () => this.sweepPool(key, pool, keep, olderThan));
      out.released.push(...r.released);
      out.spared += r.spared;
    }
    if (out.released.length > 0) {
      this.d.log.info({ released: out.released, spared: out.spared }, 'released leases Docker does not have');
      this.d.events.publish('leases.reconciled', out);
    }
    return out;
  }

  private async sweepPool(key: string, pool: Cidr, keep: ReadonlySet<bigint>, olderThan: Date): Promise<Result> {
    const record = (await this.d.store.pools.get(key))?.value;
    // No such pool (any more): nothing of ours can be in it that its teardown does not remove.
    if (!record) return { released: [], spared: 0 };
    const mirror = this.d.store.mirrors.leases;
    await mirror.upToDate();
    const leases = children(mirror, key).flatMap((e): LeaseEntry[] => {
      const address = valueOfChildKey(pool, e.key);
      return address === null ? [] : [{ address, value: e.value, revision: e.revision }];
    });
    const context = { host: this.d.host, keep, olderThan };
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
