import { NO_DEADLINE, RpcContext } from '@weave/bus';
import { ipamRpc, ResOf } from '@weave/contracts';
import { describeError, InvalidRequestError } from '@weave/errors';
import { Cidr, containsCidr, formatCidr, formatIp, ipWithPrefix, parseCidr } from '@weave/netaddr';
import { KeyedMutex } from '@weave/sync';
import { z } from 'zod';
import { Addresses } from './addresses';
import { cidrOfPoolKey, parsePoolId, PoolSpec, poolKey, valueOfChildKey } from './core/keys';
import { heldBy } from './core/records';
import { poolStatus } from './core/status';
import { undoneIfLate } from './deadline';
import type { IpamDeps } from './deps';
import { Pools } from './pools';
import { HostSweeper } from './reconcile';
import { children } from './store';
import { Views } from './views';

type Req<M extends keyof typeof ipamRpc.methods> = z.output<(typeof ipamRpc.methods)[M]['req']>;
type Res<M extends keyof typeof ipamRpc.methods> = ResOf<typeof ipamRpc, M>;

/** Default-subnet choices on this host run one at a time, so two do not race for one candidate. */
const DEFAULT_POOL_LOCK = 'default-pool';

/**
 * The ipamRpc handlers. Docker sends calls concurrently; calls for one pool run one at a time
 * in this process (a keyed mutex), and compare-and-set in KV keeps hosts apart.
 */
export class Ipam {
  private readonly lock = new KeyedMutex();
  private readonly views: Views;
  private readonly pools: Pools;
  private readonly addresses: Addresses;
  private readonly sweeper: HostSweeper;

  constructor(private readonly d: IpamDeps) {
    this.views = new Views(d);
    this.pools = new Pools(d, this.views);
    this.addresses = new Addresses(d, this.views);
    this.sweeper = new HostSweeper(d, this.views, this.pools, this.lock);
  }

  /**
   * Creates or joins a pool for one network on this host. A request that finishes after plugin-api
   * gave up on it (Docker's `network create` then failed) leaves this host's reference undone
   * (see undoneIfLate); otherwise Docker's retry would be refused as the same subnet used twice
   * on this host, and so would every retry after it.
   *
   * A retry that finds a reference still recorded is refused all the same, on purpose. Docker
   * sends no network identity with RequestPool, so ipam cannot tell a reference left by a request
   * whose reply was lost from a live network using the subnet; taking it over would let two
   * networks share one reference, and the first one removed would tear the pool down under the
   * other. Such leftovers now need a lost reply or a crash between the KV write and the reply; a
   * retry arriving while the late request still runs waits behind it (the pool's lock) and finds
   * it undone. Reclaiming real leftovers needs Docker's view of its networks, which plugin-api
   * has: reconciliation against Docker releases them once older than its grace (see HostSweeper).
   */
  async requestPool(req: Req<'requestPool'>, ctx: RpcContext = NO_DEADLINE): Promise<Res<'requestPool'>> {
    if (req.pool === null) {
      if (req.v6) throw new InvalidRequestError('IPv6 networks need a subnet for now (no IPv6 default subnets yet): pass --ipv6 --subnet, e.g. fd00:1::/64');
      if (req.subPool !== null) throw new InvalidRequestError(`--ip-range ${req.subPool} needs --subnet`);
      const poolId = await this.lock.run(DEFAULT_POOL_LOCK, () =>
        undoneIfLate(this.d, ctx, 'RequestPool for a default subnet', () => this.pools.requestDefault(), (id) => this.pools.release(parsePoolId(id), id)),
      );
      return { poolId, pool: formatCidr(parsePoolId(poolId).pool), data: {} };
    }
    const spec = explicitSpec(req.pool, req.subPool, req.v6);
    const poolId = await this.lock.run(poolKey(spec.pool), () =>
      undoneIfLate(this.d, ctx, `RequestPool for ${formatCidr(spec.pool)}`, () => this.pools.requestExplicit(spec), (id) => this.pools.release(spec, id)),
    );
    // No gateway in `data`: Docker then asks for one with RequestAddress, which records it.
    return { poolId, pool: formatCidr(spec.pool), data: {} };
  }

  releasePool(req: Req<'releasePool'>): Promise<Res<'releasePool'>> {
    const spec = parsePoolId(req.poolId);
    return this.lock.run(poolKey(spec.pool), async () => {
      await this.pools.release(spec, req.poolId);
      return {};
    });
  }

  /** Leases an address; one leased after the caller gave up is released again (see undoneIfLate). */
  requestAddress(req: Req<'requestAddress'>, ctx: RpcContext = NO_DEADLINE): Promise<Res<'requestAddress'>> {
    const spec = parsePoolId(req.poolId);
    return this.lock.run(poolKey(spec.pool), async () => {
      const { view, granted } = await undoneIfLate(
        this.d,
        ctx,
        `RequestAddress (${req.kind}${req.address ? ` ${req.address}` : ''}) in ${req.poolId}`,
        async () => {
          const view = await this.views.get(spec, req.poolId);
          return { view, granted: await this.addresses.request(view, req) };
        },
        // Only what this request leased: a gateway it merely looked up stays.
        async ({ view, granted }) => {
          if (granted.leasedNow) await this.addresses.release(view, formatIp({ family: view.pool.family, value: granted.value }));
        },
      );
      // Always the pool's prefix length, also for an address of a narrower --ip-range.
      return { address: ipWithPrefix(granted.value, view.pool) };
    });
  }

  releaseAddress(req: Req<'releaseAddress'>): Promise<Res<'releaseAddress'>> {
    const spec = parsePoolId(req.poolId);
    return this.lock.run(poolKey(spec.pool), async () => {
      await this.addresses.release(await this.views.get(spec, req.poolId), req.address);
      return {};
    });
  }

  /** Releases this host's endpoint leases and pool references Docker does not have (plugin-api sends Docker's view). */
  reconcileHost(req: Req<'reconcileHost'>): Promise<Res<'reconcileHost'>> {
    return this.sweeper.sweep(req);
  }

  /**
   * Every pool of the mesh, read from KV (not from this host's views); which pools, blocks and
   * leases there are, from the mirrors once they hold every write made before the call. The
   * status reply's hosts come from HostLease (see service.ts).
   */
  async status(): Promise<Omit<Res<'status'>, 'hosts'>> {
    const pools = [];
    const m = this.d.store.mirrors;
    await Promise.all([m.pools.upToDate(), m.blocks.upToDate(), m.leases.upToDate()]);
    for (const key of m.pools.keys()) {
      const pool = cidrOfPoolKey(key);
      const record = pool && (await this.d.store.pools.get(key))?.value;
      if (!pool || !record) continue;
      const blocks = children(m.blocks, key).flatMap((b) => {
        const base = valueOfChildKey(pool, b.key);
        return base === null ? [] : [{ base, owner: b.value.owner }];
      });
      const leased = m.leases.keys(key).flatMap((k) => valueOfChildKey(pool, k) ?? []);
      pools.push({ pool, status: poolStatus(record, blocks, leased) });
    }
    return { pools: pools.sort((a, b) => byCidr(a.pool, b.pool)).map((p) => p.status) };
  }

  /**
   * Waits for the mirrors' first snapshots and loads the views of the pools this host holds, so
   * the first calls after a start are fast. Only a speed-up: when the mirrors are not there yet,
   * requests wait for them instead.
   */
  async warm(): Promise<number> {
    let n = 0;
    const m = this.d.store.mirrors;
    try {
      await Promise.all([m.pools.ready(), m.blocks.ready(), m.leases.ready()]);
    } catch (err) {
      this.d.log.warn({ err }, `IPAM state not loaded yet, so pools load on first use: ${describeError(err)}`);
      return 0;
    }
    for (const key of m.pools.keys()) {
      const record = (await this.d.store.pools.get(key))?.value;
      if (!record || heldBy(record, this.d.host) === 0) continue;
      await this.lock.run(key, () => this.views.get(parsePoolId(record.poolId), record.poolId));
      n++;
    }
    return n;
  }
}

/** The pool Docker asked for, checked the way Docker's own IPAM checks it. */
function explicitSpec(poolText: string, subPoolText: string | null, v6: boolean): PoolSpec {
  const pool = parseCidr(poolText);
  if ((pool.family === 6) !== v6) throw new InvalidRequestError(`--subnet ${poolText} is not an IPv${v6 ? 6 : 4} subnet`);
  const subPool = subPoolText === null ? null : parseCidr(subPoolText);
  if (subPool && !containsCidr(pool, subPool)) throw new InvalidRequestError(`--ip-range ${subPoolText} is not inside --subnet ${poolText}`);
  return { pool, subPool };
}

const byCidr = (a: Cidr, b: Cidr): number => a.family - b.family || (a.base < b.base ? -1 : a.base > b.base ? 1 : a.prefix - b.prefix);
