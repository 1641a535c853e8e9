import type { CheckLeasesRequest, CheckLeasesResult } from '@weave/contracts';
import { describeError } from '@weave/errors';
import { Cidr, contains, parseCidr, parseIp } from '@weave/netaddr';
import type { z } from 'zod';
import { Holding, holdingOf } from './core/holdings';
import { leaseKey, poolKey } from './core/keys';
import { heldBy } from './core/records';
import type { IpamDeps } from './deps';

type Request = z.output<typeof CheckLeasesRequest>;
type Result = z.output<typeof CheckLeasesResult>;
type Answer = Result['addresses'][number];

export interface LeaseCheckDeps extends Pick<IpamDeps, 'host' | 'store' | 'log' | 'membership'> {
  /** Leases exactly `address` for an endpoint of this host, create-if-absent (RequestAddress with --ip). */
  lease: (poolId: string, address: string) => Promise<void>;
}

/**
 * Tells plugin-api which of the addresses its Docker's endpoints use this host still holds. A
 * returning host's containers keep running with addresses a reclaim released (README, "Lost
 * hosts"): those another host leased meanwhile are `taken`, and their containers must move.
 *
 * An address nobody leases (a rejoin that stopped before it leased its containers' addresses
 * again) is leased again here, as the rejoin would have: create-if-absent, so never twice, and
 * only while this host is live (a fenced host leases nothing). Read from the leases mirror once
 * it holds every write made before the call; an address seen taken is read again from KV.
 */
export class LeaseCheck {
  constructor(private readonly d: LeaseCheckDeps) {}

  async check(req: Request): Promise<Result> {
    await this.d.store.mirrors.leases.upToDate();
    const addresses: Answer[] = [];
    for (const p of req.pools) {
      const pool = parseCidr(p.subnet);
      for (const address of p.addresses) {
        // Another family's address, or another subnet's of the same network: not this pool's to say.
        if (contains(pool, parseIp(address))) addresses.push(await this.one(pool, p.subnet, address));
      }
    }
    return { addresses };
  }

  private async one(pool: Cidr, subnet: string, address: string): Promise<Answer> {
    const key = leaseKey(pool, parseIp(address).value);
    const answer = (h: Holding, adopted = false): Answer => ({ subnet, address, state: h.state, by: h.state === 'taken' ? h.by : null, adopted });
    const seen = holdingOf(this.d.store.mirrors.leases.get(key)?.value, this.d.host);
    if (seen.state === 'held') return answer(seen);
    // Taken, or free, is acted on: read it from KV, not from the mirror.
    const now = holdingOf((await this.d.store.leases.get(key))?.value, this.d.host);
    if (now.state !== 'free') return answer(now);
    if (await this.adopt(pool, address)) return answer({ state: 'held' }, true);
    return answer(holdingOf((await this.d.store.leases.get(key))?.value, this.d.host));
  }

  private async adopt(pool: Cidr, address: string): Promise<boolean> {
    if (!this.live()) return false;
    const record = (await this.d.store.pools.get(poolKey(pool)))?.value;
    if (!record || heldBy(record, this.d.host) === 0) return false;
    try {
      await this.d.lease(record.poolId, address);
    } catch (err) {
      this.d.log.warn({ err, poolId: record.poolId, address }, `address ${address}, which a container on this host uses, has no lease and could not be leased again: ${describeError(err)}`);
      return false;
    }
    this.d.log.warn({ poolId: record.poolId, address }, `leased ${address} again: a container on this host uses it and it had no lease (a rejoin after a reclaim stopped half-way)`);
    return true;
  }

  private live(): boolean {
    try {
      this.d.membership.assertLive();
      return true;
    } catch {
      return false;
    }
  }
}
