import { describeError, UnavailableError } from '@weave/errors';
import { decideRejoin, decideRenew, expired, HeldAddress, HeldPool, HostRecord, hostStatus, reclaimStalled } from './core/hosts';
import type { IpamDeps, Membership } from './deps';
import type { Reclaimer } from './reclaimer';

export interface HostLeaseConfig {
  /** How often this host renews its record and looks for hosts to reclaim. */
  renewMs: number;
  /** How long a host may go unrenewed before it is reclaimed. */
  leaseMs: number;
}

const RETRY_MS = 1000;
/** How long a request waits for a host still registering (whenServing), at most. */
const SERVING_WAIT_MS = 5000;
/** Left of the caller's deadline for the reply to get back, when waiting. */
const REPLY_MARGIN_MS = 500;

/** Where this host stands: not registered yet, live at an epoch, or fenced (reclaimed while away). */
type Standing =
  | { kind: 'starting' }
  | { kind: 'live'; epoch: number; renewedAt: Date; revision: number | null }
  | { kind: 'fenced'; epoch: number; why: string };

export interface HostLeaseDeps extends Pick<IpamDeps, 'host' | 'store' | 'events' | 'log' | 'now'> {
  reclaimer: Reclaimer;
  /**
   * Once registered again: joins the pools a reclaim took this host's references from, and leases
   * again the released addresses nobody took meanwhile. Returns those somebody did take.
   */
  rejoin: (pools: readonly HeldPool[], released: readonly HeldAddress[]) => Promise<HeldAddress[]>;
}

/**
 * This host's record (see core/hosts.ts): registered at start, renewed by CAS every renewMs; each
 * renewal also reclaims hosts whose lease ran out. When the record turns out reclaimed (this host
 * was away or cut off beyond the lease), the host stands down: it refuses allocations, forgets its
 * old blocks (views are per epoch), waits for the reclaim to finish, registers again under the new
 * epoch and joins its pools again, then claims fresh blocks as requests come.
 *
 * The timestamps are each host's own clock: the lease (minutes) must exceed any skew between hosts.
 */
export class HostLease implements Membership {
  private standing: Standing = { kind: 'starting' };
  private rejoining = false;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> = Promise.resolve();
  /** Woken whenever the standing or the rejoining flag changes: requests waiting in whenServing. */
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly d: HostLeaseDeps,
    readonly config: HostLeaseConfig,
  ) {}

  /** 0 before the first registration: nothing carries it, since nothing is allocated until then. */
  epoch(): number {
    return this.standing.kind === 'starting' ? 0 : this.standing.epoch;
  }

  /**
   * assertLive, and not in the middle of registering again: Docker's requests wait until the
   * returning host has leased its containers' addresses again, or a new container could be given
   * one of them. (The re-leasing itself calls the handlers directly, past this check.)
   */
  assertServing(): void {
    if (this.rejoining) throw new UnavailableError(`ipam on ${this.d.host} allocates nothing now: it is registering again after a reclaim; retry shortly`);
    this.assertLive();
  }

  /**
   * assertServing, but a host still registering (just started while the KV forms its quorum, or
   * re-leasing its containers' addresses after a reclaim) is waited for, up to SERVING_WAIT_MS and
   * the caller's deadline (epoch ms) less a margin: `docker network create` right after
   * `compose up` then works instead of failing at once. A fenced or unrenewed host fails at once.
   */
  async whenServing(deadline: number | null): Promise<void> {
    const until = Math.min(Date.now() + SERVING_WAIT_MS, deadline === null ? Infinity : deadline - REPLY_MARGIN_MS);
    while ((this.standing.kind === 'starting' || this.rejoining) && Date.now() < until) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, until - Date.now());
        this.waiters.add(done);
      });
    }
    this.assertServing();
  }

  private setStanding(standing: Standing, rejoining = this.rejoining): void {
    this.standing = standing;
    this.rejoining = rejoining;
    for (const wake of [...this.waiters]) wake();
  }

  assertLive(): void {
    const why = this.notLive();
    if (why !== null) throw new UnavailableError(`ipam on ${this.d.host} allocates nothing now: ${why}`);
  }

  /** Why this host must not allocate, or null. Memory and the mirror only: no round trip. */
  private notLive(): string | null {
    const s = this.standing;
    if (s.kind === 'starting') return 'it has not registered yet';
    if (s.kind === 'fenced') return s.why;
    // Unrenewed for nearly a lease: a survivor may reclaim our blocks any moment. One renewal
    // period early, so a survivor whose clock runs up to that much ahead never reclaims a block
    // we still allocate from.
    const silentMs = this.d.now().getTime() - s.renewedAt.getTime();
    if (silentMs >= this.config.leaseMs - this.config.renewMs) {
      return `it could not renew its lease for ${Math.round(silentMs / 1000)} s, so its blocks may be reclaimed`;
    }
    // A reclaim seen by the watch before our next renewal. Only a write after ours counts: the
    // mirror may still show our record from before we registered.
    const seen = this.d.store.mirrors.hosts.get(this.d.host);
    if (seen && s.revision !== null && seen.revision > s.revision && (seen.value.state !== 'live' || seen.value.epoch !== s.epoch)) {
      return `its record was reclaimed${seen.value.state === 'reclaimed' ? ` by ${seen.value.reclaimedBy}` : ''}`;
    }
    return null;
  }

  /** Registers, then renews every renewMs until stopped. */
  async start(): Promise<void> {
    await this.tick();
    this.schedule();
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.ticking;
  }

  private schedule(): void {
    // Not registered (KV not reachable at start) or standing down: allocations wait on the next try, so it comes soon.
    const delay = this.standing.kind === 'live' ? this.config.renewMs : Math.min(this.config.renewMs, RETRY_MS);
    this.timer = setTimeout(() => {
      void this.tick().finally(() => {
        if (this.timer) this.schedule();
      });
    }, delay);
    this.timer.unref();
  }

  /** One renewal (or registration again, when fenced), then a look for hosts to reclaim. Never overlaps itself. */
  tick(): Promise<void> {
    this.ticking = this.ticking.then(() => this.once());
    return this.ticking;
  }

  private async once(): Promise<void> {
    try {
      if (this.standing.kind === 'fenced') await this.tryRejoin();
      else await this.renew();
      if (this.standing.kind === 'live') await this.reclaimLost();
    } catch (err) {
      this.d.log.warn({ err }, `host lease: ${describeError(err)}`);
    }
  }

  private async renew(): Promise<void> {
    const started = this.d.now();
    const epoch = this.standing.kind === 'live' ? this.standing.epoch : null;
    const { result, revision } = await this.d.store.hosts.mutate(this.d.host, (cur) => decideRenew(cur, epoch, started));
    if (result.kind === 'fenced') return this.standDown(result.record);
    if (epoch === null) this.d.log.info({ epoch: result.epoch }, 'registered this host');
    // The lease counts from before the write: that is the renewedAt the others see.
    this.setStanding({ kind: 'live', epoch: result.epoch, renewedAt: started, revision });
  }

  private async standDown(record: HostRecord): Promise<void> {
    const old = this.epoch();
    const by = record.state === 'reclaimed' ? record.reclaimedBy : null;
    const why = `its record was reclaimed${by ? ` by ${by}` : ''} (it was away longer than its lease); it registers again once the reclaim is done`;
    this.setStanding({ kind: 'fenced', epoch: old, why });
    this.d.log.error({ epoch: old, record }, `this host was reclaimed: addresses of its running containers are no longer guaranteed unique`);
    this.d.events.publish('host.fenced', { epoch: old, reclaimedBy: by, reclaimedAt: record.state === 'reclaimed' ? record.reclaimedAt : null });
    await this.tryRejoin();
  }

  /**
   * Registers again once the reclaim is done; finishes it first if its reclaimer stopped half-way.
   * Before registering, removes what is left of its own fenced epochs (a lease or block written
   * while the reclaimer listed): the same CAS-guarded removal.
   */
  private async tryRejoin(): Promise<void> {
    const cur = (await this.d.store.hosts.get(this.d.host))?.value ?? null;
    if (cur?.state === 'reclaimed') {
      if (reclaimStalled(cur, this.d.now(), this.config.leaseMs)) await this.d.reclaimer.complete(this.d.host, cur);
      else if (!cur.done) return;
      await this.d.reclaimer.sweep(this.d.host, cur.epoch - 1, new Set());
    }
    const started = this.d.now();
    const { result, revision } = await this.d.store.hosts.mutate(this.d.host, (r) => decideRejoin(r, started));
    if (result.kind === 'wait') return;
    // Rejoining from the same moment it is live: no request slips in before the re-leasing.
    this.setStanding({ kind: 'live', epoch: result.epoch, renewedAt: started, revision }, true);
    this.d.log.warn({ epoch: result.epoch, pools: result.pools }, 'registered this host again after a reclaim');
    let lost: HeldAddress[];
    try {
      lost = await this.d.rejoin(result.pools, result.released);
    } finally {
      this.setStanding(this.standing, false);
    }
    if (lost.length > 0) this.d.log.error({ lost }, `${lost.length} address(es) of containers on this host were given to others while it was away: plugin-api takes those containers off the network and gives them fresh addresses`);
    const kept = result.released.length - lost.length;
    this.d.events.publish('host.rejoined', { epoch: result.epoch, pools: result.pools.map((p) => p.poolId), kept, lost });
  }

  /** Hosts whose lease ran out, and reclaims whose reclaimer stopped half-way. */
  private async reclaimLost(): Promise<void> {
    const now = this.d.now();
    for (const host of this.d.store.mirrors.hosts.keys()) {
      const r = this.d.store.mirrors.hosts.get(host)?.value;
      if (!r || host === this.d.host) continue;
      if (expired(r, now, this.config.leaseMs)) await this.d.reclaimer.reclaim(host, false);
      else if (r.state === 'reclaimed' && reclaimStalled(r, now, this.config.leaseMs)) await this.d.reclaimer.complete(host, r);
    }
  }

  /** Every host's record, for status. */
  async status() {
    const m = this.d.store.mirrors.hosts;
    await m.upToDate();
    const now = this.d.now();
    return m
      .keys()
      .sort()
      .flatMap((host) => {
        const record = m.get(host)?.value;
        return record ? [hostStatus({ host, record }, now, this.config.leaseMs)] : [];
      });
  }
}
