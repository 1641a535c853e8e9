import type { Written } from '@weave/bus';
import { ConflictError, describeError, ExhaustedError, InternalError, UnavailableError } from '@weave/errors';
import { Cidr, formatCidr, formatIp, overlaps, parseCidr } from '@weave/netaddr';
import { describeNetworks, DockerContext, heldVerdict, networksOverlapping } from './core/docker-users';
import { cidrOfPoolKey, parsePoolId, PoolSpec, poolIdOf, poolKey, valueOfChildKey } from './core/keys';
import { BlockRecord, decideJoin, decideLeave, heldBy, holderTotal, JoinResult, LeaseRecord, NewPool, newPoolRecord, PoolRecord } from './core/records';
import { blockOf, chooseSubnet } from './core/space';
import type { IpamDeps } from './deps';
import { children, Entry } from './store';
import type { Views } from './views';

/** Where default subnets of one family come from, and what to tell a user when none is left. */
export interface DefaultSpace {
  range: Cidr;
  prefix: number;
  /** What chose the range, for messages: `WEAVE_IPAM_RANGE`, `this mesh's ULA prefix`. */
  source: string;
  remedy: string;
}

/**
 * Pool records: one per subnet, mesh-wide, with a reference count per host. The first host to
 * ask creates the record, the others join it; the last one to leave tears the pool down.
 * Overlapping pools are refused, as Docker's own IPAM refuses them in one address space.
 */
export class Pools {
  constructor(
    private readonly d: IpamDeps,
    private readonly views: Views,
  ) {}

  /**
   * `--subnet` given: create or join that pool. Returns the PoolID. `docker`: this host's Docker
   * networks, which tell a create asked again from a second network (see heldVerdict).
   */
  async requestExplicit(spec: PoolSpec, docker: DockerContext | null = null): Promise<string> {
    const existing = await this.overlappingNow(spec.pool);
    if (existing) throw new ConflictError(`subnet ${formatCidr(spec.pool)} overlaps ${formatCidr(existing)}, which a weave network already uses${this.here(docker, existing)}`);
    const { result: joined, revision } = await this.join(spec, docker);
    if (joined.kind === 'created') {
      const other = await this.confirmAlone(spec, revision);
      if (other) throw new ConflictError(`subnet ${formatCidr(spec.pool)} overlaps ${formatCidr(other)}, which another host created at the same moment; try again`);
    }
    if (joined.kind === 'adopted') {
      this.d.log.info({ poolId: joined.record.poolId }, 'pool asked for again by a network Docker does not have yet: this host keeps its one reference (left by a create that never completed)');
    }
    this.requested(joined.record);
    return joined.record.poolId;
  }

  /** Docker's networks here that overlap `pool`, for a refusal's message. */
  private here(docker: DockerContext | null, pool: Cidr): string {
    const users = docker ? networksOverlapping(docker.view, pool) : [];
    return users.length > 0 ? ` (network ${describeNetworks(users)} on this host)` : '';
  }

  private async join(spec: PoolSpec, docker: DockerContext | null): Promise<Written<Exclude<JoinResult, { kind: 'draining' | 'stale' }>>> {
    const key = poolKey(spec.pool);
    const whenHeld = docker ? (cur: PoolRecord) => heldVerdict(cur, this.d.host, spec, docker) : undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      const { result, revision } = await this.d.store.pools.mutate(key, (cur) => decideJoin(cur, this.newPool(spec), whenHeld));
      this.views.drop(key);
      if (result.kind === 'draining') {
        // Its last holder left but did not finish removing it (or is doing so now): finish it.
        await this.drain(key);
      } else if (result.kind === 'stale') {
        // This host's leftover with another ip-range: gone first, as reconciliation would drop it.
        await this.leave(parsePoolId(result.record.poolId), result.record.poolId);
      } else {
        return { result, revision };
      }
    }
    throw new UnavailableError(`pool ${poolIdOf(spec)} is being removed by another host; try again`);
  }

  /**
   * Before creating: the pool keys as this host's watch has them (no round trip). They can lag
   * other hosts by the watch's delay: a pool created elsewhere within it is caught after our
   * create by confirmAlone; one removed within it is read back, so a stale key never refuses a
   * free subnet.
   */
  private async overlappingNow(pool: Cidr): Promise<Cidr | null> {
    await this.d.store.mirrors.pools.ready();
    for (const other of this.overlapping(pool)) if (await this.d.store.pools.get(poolKey(other))) return other;
    return null;
  }

  /**
   * Two hosts can create overlapping pools at the same moment, each before seeing the other's
   * record. Whoever sees an overlap after creating withdraws, and the later of two creations
   * always sees the earlier one, so at most one of them survives (sometimes neither, and the user
   * retries). Returns the pool we withdrew for, or null when ours stands.
   *
   * Why the watched keys are enough here, though they may lag: we first wait until they reflect
   * the revision of our own create. KV revisions are the bucket stream's sequence numbers and the
   * watch applies them in that order, so once ours is applied, so is every pool record created
   * before it; the later creation therefore sees the earlier one, unless the earlier was already
   * removed, and then there is nothing left to clash with. Keys applied beyond our revision only
   * add later writes, which can make us withdraw too, never keep a clash. If the watch cannot
   * catch up in time we cannot tell, so we withdraw and the caller retries.
   */
  private async confirmAlone(spec: PoolSpec, revision: number | null): Promise<Cidr | null> {
    let other: Cidr | null;
    try {
      if (revision === null) throw new InternalError(`creating pool ${poolIdOf(spec)} reported no revision`);
      await this.d.store.mirrors.pools.caughtUp(revision);
      other = this.overlapping(spec.pool)[0] ?? null;
    } catch (e) {
      await this.withdraw(spec);
      throw e;
    }
    if (other) await this.withdraw(spec);
    return other;
  }

  private async withdraw(spec: PoolSpec): Promise<void> {
    await this.leave(spec, poolIdOf(spec)).catch((err) =>
      this.d.log.error({ err, poolId: poolIdOf(spec) }, `could not withdraw a pool this host just created: ${describeError(err)}`),
    );
  }

  /**
   * No `--subnet`: the lowest free /prefix of `space.range` (WEAVE_IPAM_RANGE for IPv4, the mesh's
   * ULA prefix for IPv6), created atomically.
   */
  async requestDefault(space: DefaultSpace): Promise<string> {
    const { range, prefix } = space;
    await this.d.store.mirrors.pools.ready();
    // A subnet taken meanwhile by another host fails our create, or is found by confirmAlone.
    const taken = [...this.poolPrefixes(), ...(await this.d.routes.prefixes())];
    for (let pool = chooseSubnet(range, prefix, taken); pool; pool = chooseSubnet(range, prefix, taken)) {
      taken.push(pool);
      const spec = { pool, subPool: null };
      const record = newPoolRecord(this.newPool(spec));
      // Losing this create to another host just means trying the next candidate.
      const revision = await this.d.store.pools.create(poolKey(pool), record);
      if (revision === null) continue;
      this.views.drop(poolKey(pool));
      const other = await this.confirmAlone(spec, revision);
      if (other) {
        taken.push(other);
        continue;
      }
      this.requested(record);
      return record.poolId;
    }
    throw new ExhaustedError(`no free /${prefix} left in ${formatCidr(range)} (${space.source}) that no weave network or route of this host uses; ${space.remedy}`);
  }

  /** Drops one of this host's references; the last holder's release removes every trace of the pool. */
  async release(spec: PoolSpec, poolId: string): Promise<void> {
    const { record, left } = await this.leave(spec, poolId);
    if (left) {
      this.d.log.info({ poolId, holders: record.holders }, 'released pool');
      this.d.events.publish('pool.released', { poolId, pool: record.pool, holders: holderTotal(record) });
    }
  }

  private async leave(spec: PoolSpec, poolId: string): Promise<{ record: PoolRecord; left: boolean }> {
    const key = poolKey(spec.pool);
    const { result: r } = await this.d.store.pools.mutate(key, (cur) => decideLeave(cur, poolId, this.d.host));
    this.views.drop(key);
    // Also when this host held nothing: a release that died half-way is finished by its repeat.
    if (holderTotal(r.record) === 0) await this.drain(key);
    else if (heldBy(r.record, this.d.host) === 0) await this.releaseHostKeys(key, r.record);
    return r;
  }

  /**
   * This host left a pool that others still use: its blocks go back, and so do endpoint leases
   * it still has there (leaks: Docker released every endpoint before the pool). Gateway and aux
   * addresses stay, they belong to the network the other hosts still have.
   */
  private async releaseHostKeys(key: string, record: PoolRecord): Promise<void> {
    const { blocks, leases } = await this.childrenOf(key);
    for (const b of blocks) {
      if (b.value.owner === this.d.host && b.value.gen === record.gen) await this.deleteBlock(record, b.key, b.revision);
    }
    for (const l of leases) {
      if (l.value.host === this.d.host && l.value.kind === 'endpoint' && l.value.gen === record.gen) await this.deleteLease(record, l.key, l.revision);
    }
  }

  /**
   * Removes a pool nobody holds: its blocks, its leases, then the record. Only keys of this
   * incarnation (gen) go, each by revision, so a new pool of the same subnet is never touched.
   */
  async drain(key: string): Promise<void> {
    const cur = await this.d.store.pools.get(key);
    if (!cur || holderTotal(cur.value) > 0) return;
    const record = cur.value;
    const { blocks, leases } = await this.childrenOf(key);
    for (const b of blocks) if (b.value.gen === record.gen) await this.deleteBlock(record, b.key, b.revision);
    for (const l of leases) if (l.value.gen === record.gen) await this.deleteLease(record, l.key, l.revision);
    if (await this.d.store.pools.deleteAt(key, cur.revision)) this.d.log.info({ poolId: record.poolId }, 'pool removed: no host holds it');
  }

  /**
   * The pool's blocks and leases for a teardown, which must miss none of the keys it removes: from
   * the mirrors once they reflect the buckets' last revisions, read after the pool record said the
   * teardown may begin. That is as complete as a listing, because the keys a teardown removes are
   * all written before that record was: only a holder creates blocks and leases of a pool (see
   * Addresses.request), and a host's requests and its leave run one at a time (the pool's lock).
   * So when drain reads no holder, every block and lease of that gen exists already; when this
   * host's leave is written, so is every key this host made. Keys written later are of other
   * hosts or a new gen, not ours to remove. A key the mirror shows that changed or went since
   * fails deleteAt's revision check, so nothing is removed on a stale hint.
   */
  private async childrenOf(key: string): Promise<{ blocks: Array<Entry<BlockRecord>>; leases: Array<Entry<LeaseRecord>> }> {
    const { blocks, leases } = this.d.store.mirrors;
    await Promise.all([blocks.upToDate(), leases.upToDate()]);
    return { blocks: children(blocks, key), leases: children(leases, key) };
  }

  private async deleteBlock(record: PoolRecord, key: string, revision: number): Promise<void> {
    const pool = parseCidr(record.pool);
    const base = valueOfChildKey(pool, key);
    if (base === null || !(await this.d.store.blocks.deleteAt(key, revision))) return;
    const block = formatCidr(blockOf(record.subPool ? parseCidr(record.subPool) : pool, record.blockSize, base));
    this.d.events.publish('block.released', { poolId: record.poolId, block });
  }

  private async deleteLease(record: PoolRecord, key: string, revision: number): Promise<void> {
    const pool = parseCidr(record.pool);
    const v = valueOfChildKey(pool, key);
    if (v === null || !(await this.d.store.leases.deleteAt(key, revision))) return;
    this.d.events.publish('address.released', { poolId: record.poolId, address: formatIp({ family: pool.family, value: v }) });
  }

  /** The pools other than `pool` itself that overlap it, as the watched keys have them. */
  private overlapping(pool: Cidr): Cidr[] {
    const self = poolKey(pool);
    return this.d.store.mirrors.pools.keys().flatMap((key) => {
      const other = cidrOfPoolKey(key);
      return other && key !== self && overlaps(other, pool) ? [other] : [];
    });
  }

  private poolPrefixes(): Cidr[] {
    return this.d.store.mirrors.pools.keys().flatMap((k) => cidrOfPoolKey(k) ?? []);
  }

  private newPool(spec: PoolSpec): NewPool {
    return { spec, poolId: poolIdOf(spec), host: this.d.host, blockSize: this.d.config.blockSize, gen: this.d.newId(), at: this.d.now().toISOString() };
  }

  private requested(record: PoolRecord): void {
    this.d.log.info({ poolId: record.poolId, holders: record.holders }, 'pool requested');
    this.d.events.publish('pool.requested', { poolId: record.poolId, pool: record.pool, holders: holderTotal(record) });
  }
}
