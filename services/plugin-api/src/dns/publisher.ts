import type { HostRecord, ReclaimedRecord } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { CoalescedPasses } from '@weave/sync';
import type { DnsDocker } from './docker-attachments';
import type { IpamHosts } from './ipam-hosts';
import { DnsPlan, DnsSkip, planDns } from './plan';
import { planReclaimedRemovals, reclaimsIn } from './reclaimed';
import type { DnsRecordStore } from './record-store';

export interface DnsEvents {
  publish(kind: 'dns.added', data: { containerId: string; network: string; names: string[]; addresses: string[] }): void;
  publish(kind: 'dns.removed', data: { containerId: string; network: string; names: string[] }): void;
}

export interface DnsPublisherOptions {
  host: string;
  /** Our driver name: only containers on networks of this driver get records. */
  driver: string;
  docker: DnsDocker;
  store: DnsRecordStore;
  /** ipam's hosts: the epoch our records are written under, and which hosts were reclaimed. */
  ipamHosts: IpamHosts;
  events: DnsEvents;
  log: Logger;
  /** How long a burst of Docker events (a compose project starting) is gathered into one pass. */
  debounceMs?: number;
  /** A full pass this often, for what the event stream missed (dockerd restarting, a failed pass). */
  resyncMs?: number;
  /** How long after a reclaim every host, not only its reclaimer, removes the lost host's records (see CleanupView). */
  othersAfterMs?: number;
  now?: () => Date;
}

/**
 * Keeps this host's records in the DNS bucket in line with its running containers: a pass at
 * start, one shortly after Docker events that can change names or a new reclaim in ipam's hosts,
 * and one periodically. Passes run one at a time; a trigger during a pass makes exactly one more.
 * A failed pass is only logged: the next trigger tries again.
 *
 * Records are written only while ipam has this host live, under its epoch: a host ipam reclaimed
 * has lost its addresses, and its records (ours too, when we are the one that came back) are
 * removed by the reclaimer's pass, or ours; once ipam registers us again, the pass that follows
 * its events (after the containers were moved off taken addresses) writes them anew.
 */
export class DnsPublisher {
  private readonly passes = new CoalescedPasses(
    () => this.pass(),
    (err) => {
      if (!this.stopped) this.o.log.warn({ err, host: this.o.host }, `publishing container names for DNS failed; retrying on the next trigger: ${describeError(err)}`);
    },
  );
  private readonly stops: Array<() => void> = [];
  private debounce: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Skips already warned about, so the periodic pass does not repeat them. */
  private warned = new Set<string>();
  /** Why this host publishes nothing now (ipam has it reclaimed, or not yet registered), said once. */
  private standingBy: string | null = null;
  private reclaims = new Set<string>();

  constructor(private readonly o: DnsPublisherOptions) {}

  /** Starts the triggers and the first pass, without waiting for it (NATS may lack quorum for long). */
  start(): void {
    this.stops.push(this.o.docker.watchDnsChanges(this.o.driver, () => this.soon()));
    this.stops.push(this.o.ipamHosts.onChange((hosts) => this.onHosts(hosts)));
    const timer = setInterval(() => void this.trigger(), this.o.resyncMs ?? 30_000);
    timer.unref();
    this.stops.push(() => clearInterval(timer));
    void this.trigger();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.stops.splice(0)) s();
    if (this.debounce) clearTimeout(this.debounce);
    await this.passes.idle();
  }

  /** Runs a pass now, or one more after the current pass; resolves when that pass is done. */
  trigger(): Promise<void> {
    return this.stopped ? Promise.resolve() : this.passes.request();
  }

  private soon(): void {
    if (this.stopped || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.trigger();
    }, this.o.debounceMs ?? 200);
  }

  private onHosts(hosts: ReadonlyMap<string, HostRecord>): void {
    const now = reclaimsIn(hosts);
    const fresh = [...now].some((r) => !this.reclaims.has(r));
    this.reclaims = now;
    if (fresh) this.soon();
  }

  private async pass(): Promise<void> {
    const hosts = await this.o.ipamHosts.list();
    await this.publishOwn(hosts.get(this.o.host));
    await this.removeReclaimed(hosts);
  }

  private async publishOwn(own: HostRecord | undefined): Promise<void> {
    if (own?.state !== 'live') return this.standBy(own);
    this.standingBy = null;
    const attachments = await this.o.docker.dnsAttachments(this.o.driver);
    const plan = planDns({ host: this.o.host, epoch: own.epoch }, attachments, await this.o.store.list());
    this.warnSkipped(plan.skipped);
    await this.apply(plan);
  }

  private standBy(own: ReclaimedRecord | undefined): void {
    const why = own ? `ipam on ${own.reclaimedBy} reclaimed this host at epoch ${own.epoch}` : 'ipam has not registered this host yet';
    if (why === this.standingBy) return;
    this.standingBy = why;
    this.o.log[own ? 'warn' : 'info']({ host: this.o.host, ipam: own ?? null }, `publishing no container names for DNS: ${why}; they are published once ipam has this host live`);
  }

  private async removeReclaimed(hosts: ReadonlyMap<string, HostRecord>): Promise<void> {
    const view = { me: this.o.host, now: (this.o.now ?? (() => new Date()))(), othersAfterMs: this.o.othersAfterMs ?? 60_000 };
    for (const r of planReclaimedRemovals(view, hosts, await this.o.store.all())) {
      // False: rewritten (the host is back) or removed by another host since we read it.
      if (!(await this.o.store.deleteAt(r.key, r.revision))) continue;
      const { containerId, network, names, host } = r.record;
      this.o.log.info({ key: r.key, host, epoch: r.epoch, reclaimedBy: r.reclaimedBy, containerId, network, names }, `container names of host ${host}, reclaimed by ${r.reclaimedBy}, withdrawn from DNS`);
      this.o.events.publish('dns.removed', { containerId, network, names });
    }
  }

  private async apply(plan: DnsPlan): Promise<void> {
    for (const { key, record, previous } of plan.put) {
      await this.o.store.put(key, record);
      this.o.log.info({ key, containerId: record.containerId, network: record.network, names: record.names, addresses: record.addresses }, 'container names published for DNS');
      const { containerId, network, names, addresses } = record;
      this.o.events.publish('dns.added', { containerId, network, names, addresses });
      const dropped = previous?.names.filter((n) => !names.includes(n)) ?? [];
      if (dropped.length > 0) this.o.events.publish('dns.removed', { containerId, network, names: dropped });
    }
    for (const { key, record } of plan.delete) {
      await this.o.store.delete(key);
      this.o.log.info({ key, containerId: record.containerId, network: record.network, names: record.names }, 'container names withdrawn from DNS');
      this.o.events.publish('dns.removed', { containerId: record.containerId, network: record.network, names: record.names });
    }
  }

  private warnSkipped(skipped: DnsSkip[]): void {
    const now = new Set<string>();
    for (const s of skipped) {
      const id = `${s.containerId}/${s.network}/${s.name ?? ''}/${s.reason}`;
      now.add(id);
      if (this.warned.has(id)) continue;
      this.o.log.warn(s, s.name === undefined ? `container ${s.containerId} on ${s.network} gets no DNS record: ${s.reason}` : `DNS name ${JSON.stringify(s.name)} of container ${s.containerId} on ${s.network} skipped: ${s.reason}`);
    }
    this.warned = now;
  }
}
