import type { Mutation } from '@weave/bus';
import type { StickToMacResult } from '@weave/contracts';
import { contains, formatIp, ipWithPrefix } from '@weave/netaddr';
import type { z } from 'zod';
import { leaseKey, valueOfChildKey } from './core/keys';
import type { LeaseRecord } from './core/records';
import { decideKeep, decideLetGo, decideReturn, decideStick, decideTakeOver, decideUnstick, evictionOrder, isKept, returnable, StickyEntry } from './core/sticky';
import type { IpamDeps } from './deps';
import { children } from './store';
import type { PoolView } from './views';

/**
 * Addresses that stick to a container's own MAC (StickyLease in @weave/contracts): kept for it
 * when Docker releases them, returned to its next start, let go after `keepMs`, or earlier to a
 * request that needs them. Every method runs under the pool's lock (the caller's), and every
 * change is a compare-and-set on the lease key, so another host's claim always wins or loses
 * whole.
 */
export class StickyAddresses {
  /** The latest leases revision this process wrote here: lookups wait until the mirror has it. */
  private written = 0;

  constructor(private readonly d: IpamDeps) {}

  private get keepMs(): number {
    return this.d.config.keepMs ?? 0;
  }

  /** A dynamic request with `mac`: the address kept for it, now `lease` again; null when there is none to give. */
  async returnTo(view: PoolView, mac: string, lease: LeaseRecord): Promise<bigint | null> {
    const usable = (e: StickyEntry) =>
      e.value.gen === view.record.gen && (e.value.epoch ?? 1) === view.epoch && contains(view.range, { family: view.pool.family, value: e.address });
    const found = returnable(await this.leasesOf(view), this.d.host, mac, usable);
    if (!found || !(await this.change(found.key, (cur) => decideReturn(cur, this.d.host, mac, lease)))) return null;
    view.used.add(found.address);
    this.d.log.info({ poolId: view.poolId, address: this.text(view, found.address), mac }, 'address kept for its MAC given back');
    this.d.events.publish('address.returned', { poolId: view.poolId, address: ipWithPrefix(found.address, view.pool), mac });
    return found.address;
  }

  /**
   * Docker released a lease: kept for its MAC when it sticks to one (true), else false and the
   * caller releases it. A lease kept already is a repeated release: true, nothing changes.
   */
  async keep(view: PoolView, v: bigint, cur: LeaseRecord): Promise<boolean> {
    if (!cur.sticky || this.keepMs <= 0) return false;
    const at = this.d.now();
    if (!(await this.change(leaseKey(view.pool, v), (c) => decideKeep(c, this.d.host, at.toISOString())))) return false;
    if (isKept(cur)) return true;
    const until = new Date(at.getTime() + this.keepMs).toISOString();
    this.d.log.info({ poolId: view.poolId, address: this.text(view, v), mac: cur.sticky.mac, until }, 'released address kept for its MAC');
    this.d.events.publish('address.kept', { poolId: view.poolId, address: this.text(view, v), mac: cur.sticky.mac, until });
    return true;
  }

  /** A request for exactly `v` (--ip, aux, gateway) finds it leased: a kept lease is taken over. */
  async takeOver(view: PoolView, v: bigint, lease: LeaseRecord): Promise<boolean> {
    const taken = await this.change(leaseKey(view.pool, v), (cur) => decideTakeOver(cur, lease));
    if (taken === 'kept') this.letGo(view, v);
    return taken !== null;
  }

  /** Nothing else free in the range: the kept address held longest (this host's first) goes to `lease`. */
  async evict(view: PoolView, lease: LeaseRecord): Promise<bigint | null> {
    const inRange = (await this.leasesOf(view)).filter((e) => contains(view.range, { family: view.pool.family, value: e.address }));
    for (const e of evictionOrder(inRange, this.d.host)) {
      if (await this.takeOver(view, e.address, lease)) return e.address;
    }
    return null;
  }

  /**
   * CreateEndpoint with the container's own MAC: the lease at `v` sticks to it. A MAC names one
   * container, so it sticks to one address of the pool: the latest endpoint's. Whatever else of
   * this host sticks to it lets go (a kept address is released; a live endpoint keeps its address,
   * which no longer sticks).
   */
  async stick(view: PoolView, v: bigint, mac: string): Promise<z.output<typeof StickToMacResult>> {
    if (this.keepMs <= 0) return { sticky: false, reason: 'ipam keeps no address for a MAC on this host (WEAVE_IPAM_KEEP_MS=0)' };
    const others = (await this.leasesOf(view)).filter((e) => e.address !== v && e.value.host === this.d.host && e.value.sticky?.mac === mac);
    for (const e of others) {
      if (!isKept(e.value)) await this.change(e.key, (cur) => decideUnstick(cur, this.d.host, mac));
      else if (await this.change(e.key, (cur) => decideLetGo(cur, mac))) {
        view.used.delete(e.address);
        this.letGo(view, e.address);
      }
    }
    const reason = await this.change(leaseKey(view.pool, v), (cur) => decideStick(cur, this.d.host, mac));
    return { sticky: reason === null, reason };
  }

  private letGo(view: PoolView, v: bigint): void {
    this.d.events.publish('address.released', { poolId: view.poolId, address: this.text(view, v) });
  }

  /** The pool's leases from the mirror, once it has this process's own last write. */
  private async leasesOf(view: PoolView): Promise<StickyEntry[]> {
    const mirror = this.d.store.mirrors.leases;
    await mirror.caughtUp(this.written);
    return children(mirror, view.key).flatMap((e) => {
      const address = valueOfChildKey(view.pool, e.key);
      return address === null ? [] : [{ key: e.key, address, value: e.value }];
    });
  }

  private async change<R>(key: string, decide: (cur: LeaseRecord | null) => { change: Mutation<LeaseRecord>; result: R }): Promise<R> {
    const { result, revision } = await this.d.store.leases.mutate(key, decide);
    if (revision !== null) this.written = Math.max(this.written, revision);
    return result;
  }

  private text(view: PoolView, v: bigint): string {
    return formatIp({ family: view.pool.family, value: v });
  }
}
