import { ipamRpc, ResOf } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { Cidr, containsCidr, formatCidr, ipWithPrefix, parseCidr } from '@weave/netaddr';
import { KeyedMutex } from '@weave/sync';
import { z } from 'zod';
import { Addresses } from './addresses';
import { cidrOfPoolKey, parsePoolId, PoolSpec, poolKey, valueOfChildKey } from './core/keys';
import { heldBy } from './core/records';
import { poolStatus } from './core/status';
import type { IpamDeps } from './deps';
import { Pools } from './pools';
import { entries } from './store';
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

  constructor(private readonly d: IpamDeps) {
    this.views = new Views(d);
    this.pools = new Pools(d, this.views);
    this.addresses = new Addresses(d, this.views);
  }

  async requestPool(req: Req<'requestPool'>): Promise<Res<'requestPool'>> {
    if (req.pool === null) {
      if (req.v6) throw new InvalidRequestError('IPv6 networks need a subnet for now (no IPv6 default subnets yet): pass --ipv6 --subnet, e.g. fd00:1::/64');
      if (req.subPool !== null) throw new InvalidRequestError(`--ip-range ${req.subPool} needs --subnet`);
      const poolId = await this.lock.run(DEFAULT_POOL_LOCK, () => this.pools.requestDefault());
      return { poolId, pool: formatCidr(parsePoolId(poolId).pool), data: {} };
    }
    const spec = explicitSpec(req.pool, req.subPool, req.v6);
    const poolId = await this.lock.run(poolKey(spec.pool), () => this.pools.requestExplicit(spec));
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

  requestAddress(req: Req<'requestAddress'>): Promise<Res<'requestAddress'>> {
    const spec = parsePoolId(req.poolId);
    return this.lock.run(poolKey(spec.pool), async () => {
      const view = await this.views.get(spec, req.poolId);
      const v = await this.addresses.request(view, req);
      // Always the pool's prefix length, also for an address of a narrower --ip-range.
      return { address: ipWithPrefix(v, view.pool) };
    });
  }

  releaseAddress(req: Req<'releaseAddress'>): Promise<Res<'releaseAddress'>> {
    const spec = parsePoolId(req.poolId);
    return this.lock.run(poolKey(spec.pool), async () => {
      await this.addresses.release(await this.views.get(spec, req.poolId), req.address);
      return {};
    });
  }

  /** Every pool of the mesh, read from KV (not from this host's views). */
  async status(): Promise<Res<'status'>> {
    const pools = [];
    for (const key of await this.d.store.pools.keys()) {
      const pool = cidrOfPoolKey(key);
      const record = pool && (await this.d.store.pools.get(key))?.value;
      if (!pool || !record) continue;
      const blocks = (await entries(this.d.store.blocks, key)).flatMap((b) => {
        const base = valueOfChildKey(pool, b.key);
        return base === null ? [] : [{ base, owner: b.value.owner }];
      });
      const leased = (await this.d.store.leases.keys(key)).flatMap((k) => valueOfChildKey(pool, k) ?? []);
      pools.push({ pool, status: poolStatus(record, blocks, leased) });
    }
    return { pools: pools.sort((a, b) => byCidr(a.pool, b.pool)).map((p) => p.status) };
  }

  /** Loads the views of the pools this host holds, so the first calls after a start are fast. */
  async warm(): Promise<number> {
    let n = 0;
    for (const key of await this.d.store.pools.keys()) {
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
