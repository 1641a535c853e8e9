import { InvalidRequestError, NotFoundError } from '@weave/errors';
import { formatCidr, formatIp, parseCidr } from '@weave/netaddr';
import { decideDone, decideDropHolder, decideReclaim, HeldPool, ownedByDead, ReclaimedRecord } from './core/hosts';
import { cidrOfPoolKey, valueOfChildKey } from './core/keys';
import { heldBy, holderTotal, PoolRecord } from './core/records';
import { blockOf } from './core/space';
import type { IpamDeps } from './deps';
import { children } from './store';

/** What a reclaim removed. */
export interface Reclaimed {
  blocks: Array<{ poolId: string; block: string }>;
  addresses: Array<{ poolId: string; address: string }>;
  pools: string[];
}

export type ReclaimOutcome =
  | ({ kind: 'reclaimed'; host: string; epoch: number } & Reclaimed)
  | { kind: 'already'; host: string; by: string; at: string }
  | { kind: 'live'; host: string; leftMs: number };

export interface ReclaimerDeps extends Pick<IpamDeps, 'host' | 'store' | 'events' | 'log' | 'now'> {
  leaseMs: number;
  /** Removes a pool nobody holds any more (Pools.drain). */
  drain: (key: string) => Promise<void>;
}

/**
 * Takes back what a lost host held. One survivor is elected by the CAS of the host's record
 * (decideReclaim); it then removes, each by revision after a fresh read, the host's endpoint
 * leases and blocks of the fenced epochs, and drops its pool references. Keys whose owner or
 * epoch changed meanwhile (the host came back and writes under its new epoch) are left alone.
 *
 * Gateway and aux leases belong to the network, which the other holders still have: they stay,
 * and go with the pool's teardown when the lost host was its last holder. Endpoint leases go
 * wherever they are (also static ones in other hosts' blocks): their containers were on a host
 * that is gone.
 */
export class Reclaimer {
  constructor(private readonly d: ReclaimerDeps) {}

  async reclaim(host: string, force: boolean): Promise<ReclaimOutcome> {
    if (host === this.d.host) throw new InvalidRequestError(`host ${host} is this host: run rmpeer on another host of the mesh`);
    const pools = await this.poolsHeldBy(host);
    const { result: r } = await this.d.store.hosts.mutate(host, (cur) =>
      decideReclaim(cur, { by: this.d.host, now: this.d.now(), leaseMs: this.d.leaseMs, force, pools }),
    );
    switch (r.kind) {
      case 'unknown':
        throw new NotFoundError(`host ${host} has never registered with ipam`);
      case 'live':
        return { kind: 'live', host, leftMs: r.leftMs };
      case 'already':
        return { kind: 'already', host, by: r.record.reclaimedBy, at: r.record.reclaimedAt };
      case 'won':
        this.d.log.warn({ host, epoch: r.deadEpoch, pools }, `reclaiming host ${host}: ${force ? 'rmpeer' : 'its lease ran out'}`);
        return { kind: 'reclaimed', host, epoch: r.deadEpoch, ...(await this.complete(host, r.record)) };
    }
  }

  /**
   * Removes what the host held under the epochs `record` fences and marks the reclaim done.
   * Also run for a reclaim whose reclaimer stopped half-way, by a survivor or by the host itself
   * on its return: every step is a CAS, so running it twice, or twice at once, removes each key once.
   */
  async complete(host: string, record: ReclaimedRecord): Promise<Reclaimed> {
    const out = await this.sweep(host, record.epoch - 1, new Set(record.pools.map((p) => p.poolId)));
    await this.d.store.hosts.mutate(host, (cur) => decideDone(cur, record.epoch, out.addresses));
    this.d.log.warn({ host, ...out }, `reclaimed host ${host}`);
    this.d.events.publish('host.reclaimed', { host, epoch: record.epoch - 1, by: this.d.host, ...out });
    return out;
  }

  /** The keys of `host` at `deadEpoch` or before; the pool references in `pools`. */
  async sweep(host: string, deadEpoch: number, pools: ReadonlySet<string>): Promise<Reclaimed> {
    const m = this.d.store.mirrors;
    // Every key written before the reclaim was decided is then in the mirrors.
    await Promise.all([m.pools.upToDate(), m.blocks.upToDate(), m.leases.upToDate()]);
    const out: Reclaimed = { blocks: [], addresses: [], pools: [] };
    for (const key of m.pools.keys()) {
      const record = cidrOfPoolKey(key) && (await this.d.store.pools.get(key))?.value;
      if (!record) continue;
      out.addresses.push(...(await this.leases(host, deadEpoch, key, record)));
      out.blocks.push(...(await this.blocks(host, deadEpoch, key, record)));
      if (pools.has(record.poolId) && (await this.dropHolder(host, key, record))) out.pools.push(record.poolId);
    }
    return out;
  }

  private async leases(host: string, deadEpoch: number, key: string, record: PoolRecord) {
    const pool = parseCidr(record.pool);
    const out = [];
    for (const l of children(this.d.store.mirrors.leases, key)) {
      if (l.value.kind !== 'endpoint' || !ownedByDead(l.value.host, l.value.epoch, host, deadEpoch)) continue;
      const now = await this.d.store.leases.get(l.key);
      if (!now || now.value.kind !== 'endpoint' || !ownedByDead(now.value.host, now.value.epoch, host, deadEpoch)) continue;
      const v = valueOfChildKey(pool, l.key);
      if (v === null || !(await this.d.store.leases.deleteAt(l.key, now.revision))) continue;
      const address = formatIp({ family: pool.family, value: v });
      this.d.events.publish('address.released', { poolId: record.poolId, address });
      out.push({ poolId: record.poolId, address });
    }
    return out;
  }

  private async blocks(host: string, deadEpoch: number, key: string, record: PoolRecord) {
    const pool = parseCidr(record.pool);
    const range = record.subPool ? parseCidr(record.subPool) : pool;
    const out = [];
    for (const b of children(this.d.store.mirrors.blocks, key)) {
      if (!ownedByDead(b.value.owner, b.value.epoch, host, deadEpoch)) continue;
      const now = await this.d.store.blocks.get(b.key);
      if (!now || !ownedByDead(now.value.owner, now.value.epoch, host, deadEpoch)) continue;
      const base = valueOfChildKey(pool, b.key);
      if (base === null || !(await this.d.store.blocks.deleteAt(b.key, now.revision))) continue;
      const block = formatCidr(blockOf(range, record.blockSize, base));
      this.d.events.publish('block.released', { poolId: record.poolId, block });
      out.push({ poolId: record.poolId, block });
    }
    return out;
  }

  /** The host's reference goes; when it was the last one, the pool goes (its network is gone everywhere). */
  private async dropHolder(host: string, key: string, record: PoolRecord): Promise<boolean> {
    const { result } = await this.d.store.pools.mutate(key, (cur) => decideDropHolder(cur, record.poolId, host));
    if (!result) return false;
    this.d.events.publish('pool.released', { poolId: result.poolId, pool: result.pool, holders: holderTotal(result) });
    if (holderTotal(result) === 0) await this.d.drain(key);
    return true;
  }

  private async poolsHeldBy(host: string): Promise<HeldPool[]> {
    const m = this.d.store.mirrors.pools;
    await m.upToDate();
    const out: HeldPool[] = [];
    for (const key of m.keys()) {
      const record = cidrOfPoolKey(key) && (await this.d.store.pools.get(key))?.value;
      if (record && heldBy(record, host) > 0) out.push({ poolId: record.poolId, gateway: record.gateway });
    }
    return out.sort((a, b) => a.poolId.localeCompare(b.poolId));
  }
}
