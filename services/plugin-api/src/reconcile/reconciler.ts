import type { RpcClient } from '@weave/bus';
import type { DockerReconcileReport, ipamRpc, netwireRpc } from '@weave/contracts';
import { describeError, UnavailableError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { CoalescedPasses } from '@weave/sync';
import type { z } from 'zod';
import { DockerEndpoints, DockerNetworkView, planReconcile } from './plan';
import type { ReaddressPass } from './readdresser';

export type Report = z.output<typeof DockerReconcileReport>;

export interface ReconcilerEvents {
  publish(kind: 'docker.reconciled', data: { networks: number; endpoints: number; releasedAddresses: number; releasedPools: number; removedEndpoints: number; removedNetworks: number }): void;
}

export interface ReconcilerOptions {
  /** Our driver name: only networks of this driver are ours to reconcile. */
  driver: string;
  docker: DockerEndpoints;
  ipam: Pick<RpcClient<typeof ipamRpc>, 'reconcileHost'>;
  netwire: Pick<RpcClient<typeof netwireRpc>, 'reconcileEndpoints'>;
  events: ReconcilerEvents;
  log: Logger;
  /** See planReconcile and reconcileSettings. */
  graceMs: number;
  intervalMs: number;
  now?: () => Date;
  /** Moves containers off addresses other hosts hold, first in each pass (see Readdresser). */
  readdress?: { pass(networks: readonly DockerNetworkView[]): Promise<ReaddressPass> };
}

/**
 * Makes ipam and netwire agree with Docker about which endpoints exist on this host: at start,
 * every `intervalMs`, and when asked (the plugin-api.reconcile RPC). Passes run one at a time;
 * asking during a pass gets the one after it, which sees everything up to the request.
 * The deciding is in planReconcile and in each service's sweep; this only moves data.
 */
export class DockerReconciler {
  private readonly passes: CoalescedPasses;
  private readonly now: () => Date;
  private last: { report: Report } | { error: unknown } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(private readonly o: ReconcilerOptions) {
    this.now = o.now ?? (() => new Date());
    this.passes = new CoalescedPasses(
      async () => {
        this.last = { report: await this.pass() };
      },
      (error) => (this.last = { error }),
    );
  }

  start(): void {
    this.timer = setInterval(() => void this.runLogged(), this.o.intervalMs);
    void this.runLogged();
  }

  /** Stops the timer and waits for a pass in flight. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
  }

  /** Runs a pass (or waits for the next one) and reports it; fails only when Docker could not be read. */
  async run(): Promise<Report> {
    this.inFlight = this.passes.request();
    await this.inFlight;
    const last = this.last;
    if (last && 'report' in last) return last.report;
    const cause = last?.error;
    throw new UnavailableError(`reconciling with Docker failed: ${describeError(cause)}`, { cause });
  }

  private async runLogged(): Promise<void> {
    try {
      const r = await this.run();
      if (r.problems.length > 0) this.o.log.warn({ problems: r.problems }, `reconciliation with Docker was incomplete: ${r.problems.join('; ')}`);
    } catch (err) {
      this.o.log.warn({ err }, `${describeError(err)}; trying again in ${this.o.intervalMs} ms`);
    }
  }

  private async pass(): Promise<Report> {
    const listedAt = this.now();
    const networks = await this.o.docker.endpoints(this.o.driver).catch((e: unknown) => {
      throw new UnavailableError(`cannot list this host's ${this.o.driver} networks and their endpoints in Docker`, { cause: e });
    });
    const plan = planReconcile(this.o.driver, networks, listedAt, this.o.graceMs);
    const problems: string[] = [];
    const readdress = await this.readdress(networks, problems);
    const ask = <R>(who: string, f: () => Promise<R>): Promise<R | null> =>
      f().catch((e: unknown) => (problems.push(`${who}: ${describeError(e)}`), null));
    // One after the other: they are independent, but a pass is rare and this keeps its load low.
    const ipam = await ask('ipam', () => this.o.ipam.reconcileHost(plan.ipam));
    const netwire = await ask('netwire', () => this.o.netwire.reconcileEndpoints(plan.netwire));
    const report: Report = { listedAt: listedAt.toISOString(), olderThan: plan.ipam.olderThan, networks: networks.length, endpoints: plan.endpoints, ipam, netwire, problems, ...readdress };
    this.announce(report);
    return report;
  }

  /** Before the sweeps: an address another host holds is in use twice until its container moves. */
  private async readdress(networks: readonly DockerNetworkView[], problems: string[]): Promise<Pick<Report, 'readdress'>> {
    if (!this.o.readdress) return {};
    const pass = await this.o.readdress.pass(networks).catch((e: unknown) => (problems.push(`readdress: ${describeError(e)}`), null));
    if (!pass) return {};
    const { problems: theirs, ...readdress } = pass;
    problems.push(...theirs.map((p) => `readdress: ${p}`));
    return { readdress };
  }

  private announce(r: Report): void {
    const releasedAddresses = r.ipam?.released.length ?? 0;
    const releasedPools = r.ipam?.releasedPools.length ?? 0;
    const removedEndpoints = r.netwire?.removed.length ?? 0;
    const removedNetworks = r.netwire?.removedNetworks.length ?? 0;
    const summary = { networks: r.networks, endpoints: r.endpoints, releasedAddresses, releasedPools, removedEndpoints, removedNetworks };
    if (releasedAddresses + releasedPools + removedEndpoints + removedNetworks === 0) return this.o.log.debug(summary, 'reconciled with Docker: nothing to drop');
    this.o.log.info({ ...summary, released: r.ipam?.released, releasedPools: r.ipam?.releasedPools, removed: r.netwire?.removed, removedNetworks: r.netwire?.removedNetworks }, 'reconciled with Docker: dropped what it does not have');
    this.o.events.publish('docker.reconciled', summary);
  }
}
