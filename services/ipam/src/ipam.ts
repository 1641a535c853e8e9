import { NO_DEADLINE, RpcContext } from '@weave/bus';
import { ipamRpc, ResOf } from '@weave/contracts';
import { describeError, InvalidRequestError } from '@weave/errors';
import { Cidr, containsCidr, formatCidr, formatIp, ipWithPrefix, parseCidr, parseIpInCidr } from '@weave/netaddr';
import { KeyedMutex } from '@weave/sync';
import { z } from 'zod';
import { Addresses } from './addresses';
import { describeNetworks, DockerContext, keptFor } from './core/docker-users';
import { cidrOfPoolKey, parsePoolId, PoolSpec, poolKey, valueOfChildKey } from './core/keys';
import { heldBy } from './core/records';
import { poolStatus } from './core/status';
import { ULA_SUBNET_PREFIX } from './core/ula';
import { undoneIfLate } from './deadline';
import type { IpamDeps } from './deps';
import { MeshUla } from './mesh-ula';
import { DefaultSpace, Pools } from './pools';
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
  private readonly ula: MeshUla;
  /** When references without a time count as taken (see DockerContext). */
  private readonly startedAt: Date;

  constructor(private readonly d: IpamDeps) {
    this.startedAt = d.now();
    this.views = new Views(d);
    this.pools = new Pools(d, this.views);
    this.addresses = new Addresses(d, this.views);
    this.sweeper = new HostSweeper(d, this.views, this.pools, this.lock);
    this.ula = new MeshUla(d);
  }

  /**
   * Creates or joins a pool for one network on this host. A request that finishes after plugin-api
   * gave up on it (Docker's `network create` then failed) leaves this host's reference undone
   * (see undoneIfLate); otherwise Docker's retry would be refused as the same subnet used twice
   * on this host, and so would every retry after it.
   *
   * A request for a subnet this host holds already is decided against Docker's list of this host's
   * networks, which plugin-api sends along (see heldVerdict): a second network using it is refused
   * and named; a reference no network of Docker's has is a leftover of a create that never
   * completed (a lost reply, a crash between the KV write and the reply), and the create asked
   * again takes it over, with the same PoolID and still one reference, once it is older than any
   * create in flight. Without Docker's list (plugin-api could not ask in time) it is refused as a
   * second network would be; reconciliation against Docker releases such leftovers once older than
   * its grace (see HostSweeper).
   */
  async requestPool(req: Req<'requestPool'>, ctx: RpcContext = NO_DEADLINE): Promise<Res<'requestPool'>> {
    if (req.pool === null) {
      if (req.subPool !== null) throw new InvalidRequestError(`--ip-range ${req.subPool} needs --subnet`);
      const what = `RequestPool for a default${req.v6 ? ' IPv6' : ''} subnet`;
      const poolId = await this.lock.run(DEFAULT_POOL_LOCK, () =>
        undoneIfLate(this.d, ctx, what, async () => this.pools.requestDefault(await this.defaultSpace(req.v6)), (id) => this.pools.release(parsePoolId(id), id)),
      );
      return { poolId, pool: formatCidr(parsePoolId(poolId).pool), data: {} };
    }
    const spec = explicitSpec(req.pool, req.subPool, req.v6);
    const docker: DockerContext | null = req.docker ? { view: req.docker, unknownAge: this.startedAt } : null;
    const poolId = await this.lock.run(poolKey(spec.pool), () =>
      undoneIfLate(this.d, ctx, `RequestPool for ${formatCidr(spec.pool)}`, () => this.pools.requestExplicit(spec, docker), (id) => this.pools.release(spec, id)),
    );
    // No gateway in `data`: Docker then asks for one with RequestAddress, which records it.
    return { poolId, pool: formatCidr(spec.pool), data: {} };
  }

  /** IPv4: WEAVE_IPAM_RANGE. IPv6: a /64 of the mesh's ULA /48, the same on every host (see MeshUla). */
  private async defaultSpace(v6: boolean): Promise<DefaultSpace> {
    const { defaultRange, defaultPrefix } = this.d.config;
    if (!v6) return { range: defaultRange, prefix: defaultPrefix, source: 'WEAVE_IPAM_RANGE', remedy: 'pass --subnet, or widen WEAVE_IPAM_RANGE' };
    return { range: await this.ula.prefix(), prefix: ULA_SUBNET_PREFIX, source: "this mesh's ULA prefix", remedy: 'pass --subnet' };
  }

  /**
   * Drops this host's reference. Not while Docker (its list sent along by plugin-api) still has a
   * network here with the pool's subnet: Docker leaves a network it is removing out of that list,
   * and a rolled-back create never was in it, so that ReleasePool is not the listed network's and
   * must not take the reference it relies on (see keptFor). Docker only logs a ReleasePool's
   * failure, so it is answered as done, and the reason is logged here.
   */
  releasePool(req: Req<'releasePool'>): Promise<Res<'releasePool'>> {
    const spec = parsePoolId(req.poolId);
    const key = poolKey(spec.pool);
    return this.lock.run(key, async () => {
      const users = req.docker ? keptFor((await this.d.store.pools.get(key))?.value ?? null, this.d.host, req.docker) : null;
      if (users) {
        this.d.log.warn({ poolId: req.poolId, networks: users }, `ReleasePool for ${req.poolId} not done: network ${describeNetworks(users)} still uses it on this host`);
        return {};
      }
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

  /** CreateEndpoint with the container's own MAC: its address sticks to the MAC (see sticky.ts). */
  async stickToMac(req: Req<'stickToMac'>): Promise<Res<'stickToMac'>> {
    const { ip, cidr } = parseIpInCidr(req.address);
    const key = poolKey(cidr);
    const record = (await this.d.store.pools.get(key))?.value;
    if (!record || heldBy(record, this.d.host) === 0) return { sticky: false, reason: `pool ${formatCidr(cidr)} is not in use on host ${this.d.host}` };
    return this.lock.run(key, async () => {
      const view = await this.views.get(parsePoolId(record.poolId), record.poolId);
      return this.addresses.sticky.stick(view, ip.value, req.mac.toLowerCase());
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
