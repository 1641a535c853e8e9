import { ConflictError, ExhaustedError, InvalidRequestError, NotFoundError } from '@weave/errors';
import { Cidr, contains, formatCidr, formatIp, Ip, parseIp } from '@weave/netaddr';
import { blockKey, leaseKey } from './core/keys';
import { decideGateway, decideGatewayGone, heldBy, heldByOthers, isNetworkWide, LeaseKind, LeaseRecord } from './core/records';
import { blocksOf, capacity, describeRange, firstUsable, nextFree, staticProblem } from './core/space';
import type { IpamDeps } from './deps';
import { StickyAddresses } from './sticky';
import type { PoolView, Views } from './views';

export interface AddressRequest {
  address: string | null;
  kind: LeaseKind;
  owner?: string | undefined;
  /** The endpoint's MAC: a dynamic request gets the address kept for it, if any (see sticky.ts). */
  mac?: string | undefined;
}

type Claim = 'created' | 'adopted';

/** An address given, and whether this request leased it (rather than handing out one leased before). */
export interface Granted {
  value: bigint;
  leasedNow: boolean;
}

/**
 * Leases: one KV key per address, created atomically, so no address is ever given twice, not
 * even a static one inside another host's block. Dynamic addresses come from this host's blocks.
 *
 * A lease whose reply never reached Docker (the process died between the KV create and the
 * reply) stays leased: a leak, never a duplicate, until reconciliation against Docker's
 * endpoints releases it (see HostSweeper).
 */
export class Addresses {
  readonly sticky: StickyAddresses;

  constructor(
    private readonly d: IpamDeps,
    private readonly views: Views,
  ) {
    this.sticky = new StickyAddresses(d);
  }

  /** Leases an address and returns it; the caller holds the pool's lock. */
  async request(view: PoolView, req: AddressRequest): Promise<Granted> {
    // After the pool's lock: a request queued behind others must not lease once this host is fenced.
    this.d.membership.assertLive();
    // Only holders allocate: that is what lets the last holder's release delete every lease safely.
    if (heldBy(view.record, this.d.host) === 0) throw new NotFoundError(`pool ${view.poolId} is not in use on host ${this.d.host}`);
    const lease = this.leaseOf(view, req);
    if (req.kind === 'gateway') return this.gateway(view, req.address, lease);
    if (req.address === null) {
      if (req.kind === 'aux') throw new InvalidRequestError('an aux address must name the address');
      const kept = req.mac ? await this.sticky.returnTo(view, req.mac.toLowerCase(), lease) : null;
      return { value: kept ?? (await this.dynamic(view, lease)), leasedNow: true };
    }
    const ip = parseIp(req.address);
    const claim = await this.static(view, ip, lease);
    if (claim === 'created') this.allocated(view, ip.value, req.kind);
    return { value: ip.value, leasedNow: claim === 'created' };
  }

  private leaseOf(view: PoolView, req: AddressRequest): LeaseRecord {
    const owner = req.owner ? { owner: req.owner } : {};
    return { host: this.d.host, kind: req.kind, ...owner, time: this.d.now().toISOString(), gen: view.record.gen, epoch: view.epoch };
  }

  /** --ip, --aux-address, --gateway: exactly this address, or a conflict that says so. */
  private async static(view: PoolView, ip: Ip, lease: LeaseRecord): Promise<Claim> {
    const problem = staticProblem(view.pool, ip);
    if (problem) throw new InvalidRequestError(problem);
    if ((await this.tryLease(view, ip.value, lease)) || (await this.sticky.takeOver(view, ip.value, lease))) return 'created';
    if (isNetworkWide(lease.kind) && (await this.sameNetworkWide(view, ip.value, lease.kind))) return 'adopted';
    throw new ConflictError(`address ${formatIp(ip)} is already in use in ${formatCidr(view.pool)}`);
  }

  private async sameNetworkWide(view: PoolView, v: bigint, kind: LeaseKind): Promise<boolean> {
    const cur = await this.d.store.leases.get(leaseKey(view.pool, v));
    return cur?.value.kind === kind && cur.value.gen === view.record.gen;
  }

  /**
   * The pool's one gateway. The first host to ask chooses it (--gateway, else the first usable
   * address) and records it on the pool; every other host gets the same one.
   */
  private async gateway(view: PoolView, address: string | null, lease: LeaseRecord): Promise<Granted> {
    const current = (await this.d.store.pools.get(view.key))?.value.gateway ?? null;
    const want = address === null ? { family: view.pool.family, value: firstUsable(view.pool) } : parseIp(address);
    if (current !== null) return { value: this.sameGateway(view, current, address === null ? null : want), leasedNow: false };
    const claim = await this.static(view, want, lease);
    const { result: chosen } = await this.d.store.pools.mutate(view.key, (cur) => decideGateway(cur, view.poolId, formatIp(want)));
    if (parseIp(chosen).value !== want.value) {
      // Another host recorded a different gateway while we leased ours: theirs stands.
      if (claim === 'created') await this.dropLease(view, want.value);
      return { value: this.sameGateway(view, chosen, address === null ? null : want), leasedNow: false };
    }
    if (claim === 'created') this.allocated(view, want.value, 'gateway');
    return { value: want.value, leasedNow: claim === 'created' };
  }

  private sameGateway(view: PoolView, current: string, want: Ip | null): bigint {
    const gw = parseIp(current);
    if (want === null || want.value === gw.value) return gw.value;
    throw new ConflictError(`pool ${formatCidr(view.pool)} already has gateway ${current} (chosen by the first host to create the network); ask for --gateway ${current} or none`);
  }

  /**
   * The lowest free address of this host's blocks, claiming a new block when they are full; with
   * no free address left in the range, one kept for a MAC.
   */
  private async dynamic(view: PoolView, lease: LeaseRecord): Promise<bigint> {
    const v =
      (await this.fromBlocks(view, view.own, lease)) ??
      (await this.fromNewBlocks(view, lease)) ??
      (await this.borrow(view, lease)) ??
      (await this.sticky.evict(view, lease));
    if (v === null) throw this.exhausted(view);
    this.allocated(view, v, 'endpoint');
    return v;
  }

  private async fromBlocks(view: PoolView, blocks: Iterable<Cidr>, lease: LeaseRecord): Promise<bigint | null> {
    for (const block of blocks) {
      for (let v = nextFree(block, view.pool, view.used); v !== null; v = nextFree(block, view.pool, view.used)) {
        if (await this.tryLease(view, v, lease)) return v;
      }
    }
    return null;
  }

  private async fromNewBlocks(view: PoolView, lease: LeaseRecord): Promise<bigint | null> {
    for (let block = await this.claimBlock(view); block; block = await this.claimBlock(view)) {
      const v = await this.fromBlocks(view, [block], lease);
      if (v !== null) return v;
    }
    return null;
  }

  /**
   * Every block is claimed: take any free address of the range, also in other hosts' blocks.
   * Blocks only keep hosts from contending; the lease key alone decides who has an address, so
   * a small --ip-range shared by several hosts is usable to its last address.
   */
  private async borrow(view: PoolView, lease: LeaseRecord): Promise<bigint | null> {
    await this.views.resync(view);
    return this.fromBlocks(view, blocksOf(view.range, view.record.blockSize), lease);
  }

  /**
   * Claims the lowest block nobody holds (create-if-absent); null when all are held. Which blocks
   * are held comes from the mirror, a hint that may lag: a block claimed meanwhile fails our
   * create and we try the next, one released meanwhile is skipped, and borrow still reaches its
   * addresses once every block looks held.
   */
  private async claimBlock(view: PoolView): Promise<Cidr | null> {
    const held = new Set(this.d.store.mirrors.blocks.keys(view.key));
    // The view's epoch, not the current one: a view loaded before a reclaim must claim nothing.
    if (view.epoch !== this.d.membership.epoch()) return null;
    const record = { owner: this.d.host, epoch: view.epoch, claimedAt: this.d.now().toISOString(), gen: view.record.gen };
    for (const block of blocksOf(view.range, view.record.blockSize)) {
      const key = blockKey(view.pool, block.base);
      if (held.has(key) || (await this.d.store.blocks.create(key, record)) === null) continue;
      view.own.push(block);
      view.own.sort((a, b) => (a.base < b.base ? -1 : 1));
      this.d.log.info({ poolId: view.poolId, block: formatCidr(block) }, 'claimed block');
      this.d.events.publish('block.claimed', { poolId: view.poolId, block: formatCidr(block) });
      return block;
    }
    return null;
  }

  /** Creates the lease key; false when somebody has the address. Either way it is now known used. */
  private async tryLease(view: PoolView, v: bigint, lease: LeaseRecord): Promise<boolean> {
    const created = await this.d.store.leases.create(leaseKey(view.pool, v), lease);
    view.used.add(v);
    return created !== null;
  }

  private async dropLease(view: PoolView, v: bigint): Promise<void> {
    const cur = await this.d.store.leases.get(leaseKey(view.pool, v));
    if (cur?.value.host === this.d.host && (await this.d.store.leases.deleteAt(leaseKey(view.pool, v), cur.revision))) view.used.delete(v);
  }

  private exhausted(view: PoolView): ExhaustedError {
    const inUse = [...view.used].filter((v) => contains(view.range, { family: view.pool.family, value: v })).length;
    return new ExhaustedError(`no free address in ${describeRange(view.range, view.pool)}: ${inUse} of ${capacity(view.range, view.pool)} in use`);
  }

  private allocated(view: PoolView, v: bigint, kind: LeaseKind): void {
    const address = `${formatIp({ family: view.pool.family, value: v })}/${view.pool.prefix}`;
    this.d.log.debug({ poolId: view.poolId, address, kind }, 'address allocated');
    this.d.events.publish('address.allocated', { poolId: view.poolId, address, kind });
  }

  /**
   * Frees a lease. Releasing a free address is fine: Docker releases gateways it never asked us
   * for and repeats teardown. A network-wide address stays while other hosts hold the pool.
   */
  async release(view: PoolView, address: string): Promise<void> {
    const ip = parseIp(address);
    if (!contains(view.pool, ip)) throw new InvalidRequestError(`address ${address} is not in pool ${formatCidr(view.pool)}`);
    const key = leaseKey(view.pool, ip.value);
    const cur = await this.d.store.leases.get(key);
    if (!cur) {
      view.used.delete(ip.value);
      return;
    }
    if (!(await this.mayRelease(view, cur.value, address))) return;
    // Kept for its container's MAC instead, if it sticks to one: still leased, so used.
    if (await this.sticky.keep(view, ip.value, cur.value)) return;
    // False: someone released (and maybe re-leased) it meanwhile; that lease is not ours to drop.
    if (!(await this.d.store.leases.deleteAt(key, cur.revision))) return;
    view.used.delete(ip.value);
    if (cur.value.kind === 'gateway') await this.d.store.pools.mutate(view.key, (r) => decideGatewayGone(r, formatIp(ip)));
    this.d.events.publish('address.released', { poolId: view.poolId, address: formatIp(ip) });
  }

  private async mayRelease(view: PoolView, lease: LeaseRecord, address: string): Promise<boolean> {
    if (!isNetworkWide(lease.kind)) {
      if (lease.host === this.d.host) return true;
      throw new ConflictError(`address ${address} in ${formatCidr(view.pool)} is leased by host ${lease.host}, not ${this.d.host}; not released`);
    }
    if (!(await this.sharedStill(view))) return true;
    this.d.log.debug({ poolId: view.poolId, address }, 'kept a network-wide address: other hosts still hold the pool');
    return false;
  }

  private async sharedStill(view: PoolView): Promise<boolean> {
    const record = (await this.d.store.pools.get(view.key))?.value;
    return record !== undefined && heldByOthers(record, this.d.host);
  }
}
