import type { EventPublisher } from '@weave/bus';
import type { z } from 'zod';
import type { RouterNetworkStatus, SleeveCounters } from '@weave/contracts';
import { describeError, UnavailableError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { CoalescedPasses } from '@weave/sync';
import type { SleeveConfigInput, SleeveStats } from '@weave/sleeve';
import type { Peer } from './peers';
import { LocalNetwork, planSleeve, PlannedNetwork } from './sleeve-plan';
import type { TapPlumbing } from './taps';

/** The part of @weave/sleeve's Sleeve the router uses. */
export interface SleeveLike {
  applyConfig(config: SleeveConfigInput): void;
  stop(): void;
  stats(): SleeveStats;
}

export interface DataPathDeps {
  sleeve: SleeveLike;
  /** The parts of the sleeve's config that never change while it runs. */
  identity: Pick<SleeveConfigInput, 'peerId' | 'listenHost' | 'listenPort'>;
  plumbing: TapPlumbing;
  /** This host's weave networks, from netwire. */
  localNetworks(): Promise<LocalNetwork[]>;
  peers(): Peer[];
  /** The MTU frames to `address` can have inside the sleeve's encapsulation. */
  pathMtu(address: string): Promise<number>;
  events: EventPublisher<'router'>;
  log: Logger;
}

/**
 * Keeps the sleeve in line with the networks netwire has and the peers that are connected. Every
 * change (a peer, a netwire event, the periodic resync) asks for one pass; passes never overlap,
 * and requests during a pass coalesce into one more. A pass that fails (netwire away, a TAP the
 * kernel refused) is logged with its cause and repaired by the next one.
 */
export class DataPath {
  private networks: LocalNetwork[] = [];
  private planned: PlannedNetwork[] = [];
  private readonly plugged = new Set<string>();
  private readonly pathed = new Map<string, number>();
  private refetch = true;
  private readonly passes = new CoalescedPasses(
    () => this.pass(),
    (err) => {
      const msg = `data path not in line yet, retrying at the next change or resync: ${describeError(err)}`;
      // netwire not answering yet is normal while the stack starts: no stack trace for it.
      if (err instanceof UnavailableError) this.d.log.warn(msg);
      else this.d.log.warn({ err }, msg);
    },
  );

  constructor(private readonly d: DataPathDeps) {}

  /** Re-reads netwire's networks, then syncs. */
  networksChanged(): Promise<void> {
    this.refetch = true;
    return this.sync();
  }

  sync(): Promise<void> {
    return this.passes.request();
  }

  status(): { networks: Array<z.output<typeof RouterNetworkStatus>>; sleeve: z.output<typeof SleeveCounters> } {
    const stats = this.d.sleeve.stats();
    return {
      networks: this.planned.map((n) => ({ networkId: n.networkId, wireId: n.wireId, tap: n.tap, bridge: n.bridge, attached: this.plugged.has(n.tap) })),
      sleeve: Object.fromEntries(Object.entries(stats).flatMap(([k, v]) => (typeof v === 'bigint' ? [[k, v.toString()]] : []))),
    };
  }

  /** The path and MTU last announced for `host`. */
  pathOf(host: string): { path: 'sleeve' | null; mtu: number | null } {
    const mtu = this.pathed.get(host);
    return mtu === undefined ? { path: null, mtu: null } : { path: 'sleeve', mtu };
  }

  stop(): void {
    this.d.sleeve.stop();
  }

  private async pass(): Promise<void> {
    const failures: unknown[] = [];
    if (this.refetch) {
      this.refetch = false;
      try {
        this.networks = await this.d.localNetworks();
      } catch (err) {
        // Peers still get applied: the networks already carried keep flowing meanwhile.
        this.refetch = true;
        failures.push(err);
      }
    }
    const plan = planSleeve(this.networks, this.d.peers());
    this.d.sleeve.applyConfig({ ...this.d.identity, peers: plan.peers, networks: plan.networks });
    const before = this.planned;
    this.planned = plan.taps;
    for (const gone of before.filter((b) => !plan.taps.some((t) => t.tap === b.tap))) {
      this.plugged.delete(gone.tap);
      this.d.events.publish('network.detached', { networkId: gone.networkId, wireId: gone.wireId, tap: gone.tap });
    }
    for (const t of plan.taps) {
      if (await this.d.plumbing.isPlugged(t.tap, t.bridge, t.mtu)) {
        if (!this.plugged.has(t.tap)) this.attached(t);
        continue;
      }
      this.plugged.delete(t.tap);
      try {
        await this.d.plumbing.plug(t.tap, t.bridge, t.mtu);
        this.attached(t);
      } catch (err) {
        failures.push(err);
      }
    }
    await this.announcePaths();
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new Error(failures.map(describeError).join('; '));
  }

  private attached(t: PlannedNetwork): void {
    this.plugged.add(t.tap);
    this.d.log.info({ networkId: t.networkId, wireId: t.wireId, tap: t.tap, bridge: t.bridge }, 'network on the sleeve');
    this.d.events.publish('network.attached', { networkId: t.networkId, wireId: t.wireId, tap: t.tap });
  }

  /** A `peer.path` event for each connected peer whose path or MTU is new. */
  private async announcePaths(): Promise<void> {
    const connected = this.d.peers().filter((p) => p.state === 'connected');
    for (const host of [...this.pathed.keys()]) if (!connected.some((p) => p.host === host)) this.pathed.delete(host);
    for (const p of connected) {
      const mtu = await this.d.pathMtu(p.address);
      if (this.pathed.get(p.host) === mtu) continue;
      this.pathed.set(p.host, mtu);
      this.d.events.publish('peer.path', { peer: p.host, path: 'sleeve', mtu, reason: 'the sleeve is the only data path this router has' });
    }
  }
}
