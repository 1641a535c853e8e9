import { ipamRpc, ResOf } from '@weave/contracts';
import { ConflictError, ExhaustedError, InvalidRequestError, NotFoundError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { Cidr, contains, containsCidr, formatCidr, formatIp, Ip, ipWithPrefix, overlaps, parseCidr, parseIp, sameCidr } from '@weave/netaddr';
import { KeyedMutex } from '@weave/sync';
import { z } from 'zod';
import { blockKey, blockOfKey, cidrOfPoolKey, ipOfLeaseKey, leaseKey, parsePoolId, poolIdOf, poolKey } from './core/keys';
import { blocksOf, capacity, chooseSubnet, defaultGateway, isReserved, nextFree } from './core/space';
import type { HostRoutes } from './host-routes';
import type { IpamStore, LeaseRecord, PoolRecord } from './store';

type Req<M extends keyof typeof ipamRpc.methods> = z.output<(typeof ipamRpc.methods)[M]['req']>;
type Res<M extends keyof typeof ipamRpc.methods> = ResOf<typeof ipamRpc, M>;

export interface IpamEvents {
  publish(kind: 'pool.requested' | 'pool.released', data: { poolId: string; pool: string; holders: number }): void;
  publish(kind: 'block.claimed' | 'block.released', data: { poolId: string; block: string }): void;
  publish(kind: 'address.allocated', data: { poolId: string; address: string; kind: LeaseRecord['kind'] }): void;
  publish(kind: 'address.released', data: { poolId: string; address: string }): void;
}

export interface IpamOptions {
  host: string;
  store: IpamStore;
  routes: HostRoutes;
  events: IpamEvents;
  log: Logger;
  /** Where subnets come from when the user names none. */
  defaultRange: Cidr;
  defaultPrefix: number;
  /** Addresses per block a host claims at a time. */
  blockSize: number;
  now?: () => Date;
}

/** What this host knows of one pool: its own blocks, and every address it has seen taken. */
interface PoolView {
  record: PoolRecord;
  pool: Cidr;
  range: Cidr;
  ownBlocks: Cidr[];
  used: Set<bigint>;
}

/**
 * Mesh-wide IPAM. A host claims blocks of a pool's range (create-if-absent in KV) and hands out
 * addresses only from its own blocks; each address is a lease key created atomically, so even a
 * static address inside another host's block cannot be given twice. KV is the truth: the views
 * here are caches, rebuilt from KV on first use after a start. A lease written whose reply was
 * lost (a crash between the two) is a leak, not a duplicate; reconciliation against Docker's view
 * will reclaim those.
 */
export class Ipam {
  private readonly lock = new KeyedMutex();
  private readonly views = new Map<string, PoolView>();
  private readonly now: () => Date;

  constructor(private readonly o: IpamOptions) {
    this.now = o.now ?? (() => new Date());
  }

  requestPool(req: Req<'requestPool'>): Promise<Res<'requestPool'>> {
    if (req.pool === null) {
      if (req.v6) throw new InvalidRequestError('IPv6 networks need an explicit subnet for now: pass --subnet fd…/64');
      if (req.subPool !== null) throw new InvalidRequestError('--ip-range needs --subnet');
      return this.lock.run('default-pool', () => this.claimDefaultPool());
    }
    const pool = parseCidr(req.pool);
    const subPool = req.subPool === null ? null : parseCidr(req.subPool);
    if (subPool && !containsCidr(pool, subPool)) throw new InvalidRequestError(`--ip-range ${req.subPool} is not inside --subnet ${req.pool}`);
    if ((pool.family === 6) !== req.v6) throw new InvalidRequestError(`${req.pool} is not an IPv${req.v6 ? 6 : 4} subnet`);
    return this.lock.run(poolKey(pool), () => this.joinPool(pool, subPool));
  }

  private async joinPool(pool: Cidr, subPool: Cidr | null): Promise<Res<'requestPool'>> {
    for (const key of await this.o.store.poolKeys()) {
      const other = cidrOfPoolKey(key);
      if (!sameCidr(other, pool) && overlaps(other, pool)) throw new ConflictError(`subnet ${formatCidr(pool)} overlaps ${formatCidr(other)}, which another weave network uses`);
    }
    const holders = await this.o.store.mutatePool(poolKey(pool), (cur) => {
      if (cur && (cur.holders[this.o.host] ?? 0) > 0) {
        throw new ConflictError(`subnet ${formatCidr(pool)} is already used by another network on this host`);
      }
      if (cur && cur.subPool !== (subPool && formatCidr(subPool))) {
        throw new ConflictError(`subnet ${formatCidr(pool)} is in use with --ip-range ${cur.subPool ?? '(none)'}; ask for the same range`);
      }
      const next: PoolRecord = cur
        ? { ...cur, holders: { ...cur.holders, [this.o.host]: 1 } }
        : { pool: formatCidr(pool), subPool: subPool && formatCidr(subPool), v6: pool.family === 6, holders: { [this.o.host]: 1 } };
      return { change: { put: next }, result: Object.keys(next.holders).length };
    });
    this.views.delete(poolKey(pool));
    this.o.events.publish('pool.requested', { poolId: poolIdOf(pool), pool: formatCidr(pool), holders });
    return { poolId: poolIdOf(pool), pool: formatCidr(pool), data: {} };
  }

  private async claimDefaultPool(): Promise<Res<'requestPool'>> {
    const taken = [...(await this.o.store.poolKeys()).map(cidrOfPoolKey), ...(await this.o.routes.prefixes())];
    // Each candidate is claimed by creating its record; losing that race to another host just
    // means trying the next one.
    for (let attempt = 0; attempt < 64; attempt++) {
      const pool = chooseSubnet(this.o.defaultRange, this.o.defaultPrefix, taken);
      if (!pool) break;
      const won = await this.o.store.mutatePool(poolKey(pool), (cur) =>
        cur ? { change: { keep: true }, result: false } : { change: { put: { pool: formatCidr(pool), subPool: null, v6: false, holders: { [this.o.host]: 1 } } }, result: true },
      );
      if (won) {
        this.o.events.publish('pool.requested', { poolId: poolIdOf(pool), pool: formatCidr(pool), holders: 1 });
        return { poolId: poolIdOf(pool), pool: formatCidr(pool), data: {} };
      }
      taken.push(pool);
    }
    throw new ExhaustedError(`no free /${this.o.defaultPrefix} left in ${formatCidr(this.o.defaultRange)} (WEAVE_IPAM_RANGE); pass --subnet or widen the range`);
  }

  releasePool(req: Req<'releasePool'>): Promise<Res<'releasePool'>> {
    const pool = parsePoolId(req.poolId);
    return this.lock.run(poolKey(pool), async () => {
      const key = poolKey(pool);
      const outcome = await this.o.store.mutatePool(key, (cur) => {
        if (!cur) throw new NotFoundError(`pool ${req.poolId} does not exist`);
        const holders = { ...cur.holders };
        delete holders[this.o.host];
        const left = Object.keys(holders).length;
        return { change: left === 0 ? { delete: true } : { put: { ...cur, holders } }, result: left };
      });
      this.views.delete(key);
      // This host no longer needs its blocks; with no holder left, nothing of the pool remains.
      for (const bk of await this.o.store.blockKeys(key)) {
        if (outcome === 0 || (await this.o.store.block(bk))?.owner === this.o.host) await this.o.store.deleteBlock(bk);
      }
      if (outcome === 0) for (const lk of await this.o.store.leaseKeys(key)) await this.o.store.deleteLease(lk);
      this.o.events.publish('pool.released', { poolId: req.poolId, pool: formatCidr(pool), holders: outcome });
      return {};
    });
  }

  requestAddress(req: Req<'requestAddress'>): Promise<Res<'requestAddress'>> {
    const pool = parsePoolId(req.poolId);
    return this.lock.run(poolKey(pool), async () => {
      const view = await this.view(pool, req.poolId);
      const lease: LeaseRecord = { host: this.o.host, kind: req.kind, ...(req.owner ? { owner: req.owner } : {}), time: this.now().toISOString() };
      const wanted = req.address !== null ? parseIp(req.address) : req.kind === 'gateway' ? defaultGateway(pool) : null;
      const v = wanted ? await this.claimStatic(view, wanted, lease) : await this.claimDynamic(view, lease);
      const address = ipWithPrefix(v, pool);
      this.o.events.publish('address.allocated', { poolId: req.poolId, address, kind: req.kind });
      return { address };
    });
  }

  private async claimStatic(view: PoolView, ip: Ip, lease: LeaseRecord): Promise<bigint> {
    const where = formatCidr(view.pool);
    if (!contains(view.pool, ip)) throw new InvalidRequestError(`address ${formatIp(ip)} is not in ${where}`);
    if (isReserved(view.pool, ip.value)) throw new InvalidRequestError(`address ${formatIp(ip)} is the network or broadcast address of ${where}`);
    if (!(await this.o.store.claimLease(leaseKey(view.pool, ip), lease))) {
      view.used.add(ip.value);
      throw new ConflictError(`address ${formatIp(ip)} is already in use in ${where}`);
    }
    view.used.add(ip.value);
    return ip.value;
  }

  private async claimDynamic(view: PoolView, lease: LeaseRecord): Promise<bigint> {
    for (;;) {
      for (const block of view.ownBlocks) {
        for (let v = nextFree(block, view.pool, view.used); v !== null; v = nextFree(block, view.pool, view.used)) {
          view.used.add(v);
          // Taken already means another host put a static address in our block: skip it.
          if (await this.o.store.claimLease(leaseKey(view.pool, { family: view.pool.family, value: v }), lease)) return v;
        }
      }
      if (!(await this.claimBlock(view))) break;
    }
    const inUse = (await this.o.store.leaseKeys(poolKey(view.pool))).filter((k) => contains(view.range, ipOfLeaseKey(k, view.pool.family))).length;
    const what = sameCidr(view.range, view.pool) ? formatCidr(view.pool) : `${formatCidr(view.range)} (ip-range of ${formatCidr(view.pool)})`;
    throw new ExhaustedError(`no free address in ${what}: ${inUse} of ${capacity(view.range, view.pool)} in use`);
  }

  /** Claims the lowest block nobody holds; false when every block is held. */
  private async claimBlock(view: PoolView): Promise<boolean> {
    const held = new Set(await this.o.store.blockKeys(poolKey(view.pool)));
    for (const block of blocksOf(view.range, this.o.blockSize)) {
      const key = blockKey(view.pool, block);
      if (held.has(key)) continue;
      if (await this.o.store.claimBlock(key, { owner: this.o.host, epoch: 1, claimedAt: this.now().toISOString() })) {
        view.ownBlocks.push(block);
        this.o.events.publish('block.claimed', { poolId: poolIdOf(view.pool), block: formatCidr(block) });
        return true;
      }
    }
    return false;
  }

  releaseAddress(req: Req<'releaseAddress'>): Promise<Res<'releaseAddress'>> {
    const pool = parsePoolId(req.poolId);
    const ip = parseIp(req.address);
    return this.lock.run(poolKey(pool), async () => {
      const view = await this.view(pool, req.poolId);
      if (!contains(pool, ip)) throw new InvalidRequestError(`address ${req.address} is not in ${formatCidr(pool)}`);
      // Releasing a free address is fine: Docker releases gateways it got from Data, and retries.
      await this.o.store.deleteLease(leaseKey(pool, ip));
      view.used.delete(ip.value);
      this.o.events.publish('address.released', { poolId: req.poolId, address: req.address });
      return {};
    });
  }

  async status(): Promise<Res<'status'>> {
    const pools = [];
    for (const key of await this.o.store.poolKeys()) {
      const record = await this.o.store.pool(key);
      if (!record) continue;
      const pool = cidrOfPoolKey(key);
      const leases = (await this.o.store.leaseKeys(key)).map((k) => ipOfLeaseKey(k, pool.family));
      const blocks = [];
      for (const bk of await this.o.store.blockKeys(key)) {
        const b = await this.o.store.block(bk);
        if (!b) continue;
        const block = blockOfKey(bk, pool.family);
        blocks.push({ block: formatCidr(block), owner: b.owner, used: leases.filter((ip) => contains(block, ip)).length, size: Number(capacity(block, pool)) });
      }
      pools.push({ poolId: poolIdOf(pool), pool: record.pool, subPool: record.subPool, gateway: null, holders: record.holders, blocks });
    }
    return { pools };
  }

  /** The pool as this host sees it, loaded from KV the first time (and after each restart). */
  private async view(pool: Cidr, poolId: string): Promise<PoolView> {
    const key = poolKey(pool);
    const cached = this.views.get(key);
    if (cached) return cached;
    const record = await this.o.store.pool(key);
    if (!record) throw new NotFoundError(`pool ${poolId} does not exist (was the network removed?)`);
    const ownBlocks: Cidr[] = [];
    for (const bk of await this.o.store.blockKeys(key)) {
      if ((await this.o.store.block(bk))?.owner === this.o.host) ownBlocks.push(blockOfKey(bk, pool.family));
    }
    ownBlocks.sort((a, b) => (a.base < b.base ? -1 : 1));
    const used = new Set((await this.o.store.leaseKeys(key)).map((k) => ipOfLeaseKey(k, pool.family).value));
    const view = { record, pool, range: record.subPool ? parseCidr(record.subPool) : pool, ownBlocks, used };
    this.views.set(key, view);
    return view;
  }
}

