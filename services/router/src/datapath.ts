import type { EventPublisher } from '@weave/bus';
import type { z } from 'zod';
import { PeerTraffic, RouterNetworkStatus, SLEEVE_OVERHEAD, SleeveCounters, VXLAN_OVERHEAD } from '@weave/contracts';
import { describeError, UnavailableError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { CoalescedPasses } from '@weave/sync';
import type { SleeveConfigInput, SleevePeerTraffic, SleeveSession, SleeveStats } from '@weave/sleeve';
import type { Peer } from './peers';
import { peerIdOf } from './peer-id';
import { DataPathPlan, LocalNetwork, planDataPath, PlannedNetwork } from './path-plan';
import type { TapPlumbing } from './taps';

/** The part of @weave/sleeve's Sleeve the router uses. */
export interface SleeveLike {
  applyConfig(config: SleeveConfigInput): void;
  stop(): void;
  stats(): SleeveStats;
  /** Encryption per peer; absent (or empty) for a sleeve without it. */
  sessions?(): SleeveSession[];
  /** Traffic per peer; absent for a sleeve that does not count it. */
  peerTraffic?(): SleevePeerTraffic[];
}


/** The kernel's VXLAN devices, one per network on its bridge. */
export interface VxlanPlumbing {
  ensure(spec: { name: string; vni: number; local: string; port: number; bridge: string; mtu: number }): Promise<void>;
  /** Makes the device's flood entries exactly `peers` (underlay addresses). */
  setPeers(name: string, peers: readonly string[]): Promise<void>;
  remove(name: string): Promise<void>;
  /** The weave VXLAN devices present, leftovers included. */
  list(): Promise<string[]>;
}

/** Whether VXLAN reaches each peer now. */
export interface FastPathProbeLike {
  setPeers(peers: Array<{ host: string; address: string; peerId: bigint }>): Promise<void>;
  state(host: string): { up: boolean; reason: string };
}

/** The kernel fast path, when this host has one. */
export interface FastPath {
  vxlan: VxlanPlumbing;
  probe: FastPathProbeLike;
  /**
   * Lets VXLAN in from the `peers` (underlay addresses) only, and multicast beyond the link
   * through the VXLAN devices in `multicast` only.
   */
  guard(o: { peers: readonly string[]; multicast: readonly string[] }): Promise<void>;
  /** The underlay address VXLAN leaves from, and its UDP port. */
  local: string;
  port: number;
}

export interface DataPathDeps {
  sleeve: SleeveLike;
  /** The parts of the sleeve's config that never change while it runs. */
  identity: Pick<SleeveConfigInput, 'peerId' | 'listenHost' | 'listenPort' | 'password'>;
  plumbing: TapPlumbing;
  /** The kernel fast path, or why there is none (every peer then stays on the sleeve). */
  fastPath: FastPath | { off: string };
  /** This host's weave networks, from netwire. */
  localNetworks(): Promise<LocalNetwork[]>;
  peers(): Peer[];
  /** The MTU frames to `address` can have inside the sleeve's encapsulation. */
  pathMtu(address: string): Promise<number>;
  events: EventPublisher<'router'>;
  log: Logger;
}

interface PeerPath {
  path: 'sleeve' | 'fastpath';
  mtu: number;
  reason: string;
}

/**
 * Keeps the data path in line with the networks netwire has, the peers that are connected and
 * which of them the kernel's VXLAN reaches. Every change (a peer, a probe result, a netwire event,
 * the periodic resync) asks for one pass; passes never overlap, and requests during a pass
 * coalesce into one more. A pass that fails (netwire away, a device the kernel refused) is logged
 * with its cause and repaired by the next one.
 */
export class DataPath {
  private networks: LocalNetwork[] = [];
  private plan: DataPathPlan = planDataPath([], []);
  private readonly plugged = new Set<string>();
  private readonly vxlansUp = new Set<string>();
  /** Why the last pass could not guard the fast path, or null. */
  private guardFailure: string | null = null;
  /** Networks whose VXLAN device failed in the last pass: the sleeve carries them meanwhile. */
  private failing = new Set<string>();
  private readonly pathed = new Map<string, PeerPath>();
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
      networks: this.plan.taps.map((n) => {
        const vx = this.plan.vxlans.find((v) => v.networkId === n.networkId);
        return {
          networkId: n.networkId,
          wireId: n.wireId,
          tap: n.tap,
          bridge: n.bridge,
          attached: this.plugged.has(n.tap),
          multicast: n.multicast === true,
          ...(vx ? { vxlan: { device: vx.name, vni: vx.vni, up: this.vxlansUp.has(vx.name) } } : {}),
        };
      }),
      sleeve: Object.fromEntries(Object.entries(stats).flatMap(([k, v]) => (typeof v === 'bigint' ? [[k, v.toString()]] : []))),
    };
  }

  /** The path, MTU and reason last announced for `host`, and where encryption with it stands. */
  pathOf(host: string): { path: PeerPath['path'] | null; mtu: number | null; pathReason: string | null; encryption: SleeveSession['state'] | null } {
    const p = this.pathed.get(host);
    const state = this.sessionsNow().get(peerIdOf(host));
    // Unencrypted here, the one thing worth saying is a peer that encrypts.
    const encryption = this.d.identity.password ? (state ?? 'handshaking') : state === 'encryptedPeer' ? state : null;
    return p ? { path: p.path, mtu: p.mtu, pathReason: p.reason, encryption } : { path: null, mtu: null, pathReason: null, encryption };
  }

  /**
   * What the sleeve carried to and from each peer (by host) since it started. The fast path's
   * traffic is the kernel's, counted per VXLAN device and not per peer, so it is not in here.
   */
  trafficByHost(hosts: readonly string[]): Map<string, PeerTraffic> {
    const byId = new Map((this.d.sleeve.peerTraffic?.() ?? []).map((t) => [t.peerId, t]));
    const out = new Map<string, PeerTraffic>();
    for (const host of hosts) {
      const t = byId.get(peerIdOf(host));
      if (t) out.set(host, { bytesTo: String(t.bytesOut), bytesFrom: String(t.bytesIn), framesTo: String(t.framesOut), framesFrom: String(t.framesIn) });
    }
    return out;
  }

  private sessionsNow(): Map<bigint, SleeveSession['state']> {
    return new Map((this.d.sleeve.sessions?.() ?? []).map((s) => [s.peerId, s.state]));
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
    const fp = 'off' in this.d.fastPath ? null : this.d.fastPath;
    const connected = this.d.peers().filter((p) => p.state === 'connected');
    if (fp) await attempt(failures, () => fp.probe.setPeers(connected.map((p) => ({ host: p.host, address: p.address, peerId: peerIdOf(p.host) }))));
    const fast = new Set(fp ? connected.filter((p) => fp.probe.state(p.host).up).map((p) => p.host) : []);
    // Each peer's path MTU inside the sleeve, from the route to it: the sleeve answers a packet
    // too big for it with ICMP "fragmentation needed" rather than sending it to be lost.
    const mtus = new Map<string, number>();
    for (const p of connected) {
      await attempt(failures, async () => void mtus.set(p.host, await this.d.pathMtu(p.address)));
    }
    let plan = planDataPath(this.networks, connected, fast, this.failing, mtus);
    // Before any VXLAN device of the plan exists (whatever is not let through stays on its host).
    const multicast = plan.vxlans.filter((v) => v.multicast).map((v) => v.name);
    this.guardFailure = null;
    if (fp && !(await attempt(failures, () => fp.guard({ peers: connected.map((p) => p.address), multicast })))) {
      // Unguarded, the kernel's path would let the anycast gateway's frames (and multicast that
      // must stay home) cross: every peer takes the sleeve until the guard is in place.
      this.guardFailure = `the fast path's guard rules could not be installed (${describeError(failures.at(-1))}): every peer uses the sleeve`;
      fast.clear();
      plan = planDataPath(this.networks, connected, fast, this.failing, mtus);
    }
    // The sleeve first: a peer leaving the fast path is carried again before VXLAN lets it go.
    this.d.sleeve.applyConfig({ ...this.d.identity, peers: plan.peers, networks: plan.networks });
    const before = this.plan;
    this.plan = plan;
    for (const gone of before.taps.filter((b) => !plan.taps.some((t) => t.tap === b.tap))) {
      this.plugged.delete(gone.tap);
      this.d.events.publish('network.detached', { networkId: gone.networkId, wireId: gone.wireId, tap: gone.tap });
    }
    for (const t of plan.taps) await attempt(failures, () => this.plugTap(t));
    if (fp && (await this.syncVxlans(fp, failures))) void this.sync(); // carry what failed by the sleeve now
    const changed = this.announcePaths(connected, fast, mtus);
    // A MAC the bridge learnt behind one path must be looked for on both again.
    if (changed) for (const port of [...plan.taps.map((t) => t.tap), ...plan.vxlans.map((v) => v.name)]) await attempt(failures, () => this.d.plumbing.forgetLearned(port));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new Error(failures.map(describeError).join('; '));
  }

  private async plugTap(t: PlannedNetwork): Promise<void> {
    if (await this.d.plumbing.isPlugged(t.tap, t.bridge, t.mtu)) {
      if (!this.plugged.has(t.tap)) this.attached(t);
      return;
    }
    this.plugged.delete(t.tap);
    await this.d.plumbing.plug(t.tap, t.bridge, t.mtu);
    this.attached(t);
  }

  /** True when the set of networks whose device fails changed (the plan must be made again). */
  private async syncVxlans(fp: FastPath, failures: unknown[]): Promise<boolean> {
    const failing = new Set<string>();
    for (const v of this.plan.vxlans) {
      const ok = await attempt(failures, async () => {
        await fp.vxlan.ensure({ name: v.name, vni: v.vni, local: fp.local, port: fp.port, bridge: v.bridge, mtu: v.mtu });
        await fp.vxlan.setPeers(v.name, v.peers);
      });
      if (ok) this.vxlansUp.add(v.name);
      else (this.vxlansUp.delete(v.name), failing.add(v.networkId));
    }
    // Devices of networks that left, also those a crashed router left behind.
    const present = await fp.vxlan.list().catch((err: unknown) => (failures.push(err), []));
    for (const name of present.filter((n) => !this.plan.vxlans.some((v) => v.name === n))) {
      this.vxlansUp.delete(name);
      await attempt(failures, () => fp.vxlan.remove(name));
    }
    const changed = failing.size !== this.failing.size || [...failing].some((n) => !this.failing.has(n));
    this.failing = failing;
    return changed;
  }

  private attached(t: PlannedNetwork): void {
    this.plugged.add(t.tap);
    this.d.log.info({ networkId: t.networkId, wireId: t.wireId, tap: t.tap, bridge: t.bridge }, 'network on the sleeve');
    this.d.events.publish('network.attached', { networkId: t.networkId, wireId: t.wireId, tap: t.tap });
  }

  /** A `peer.path` event for each connected peer whose path or MTU is new; true when any changed. */
  private announcePaths(connected: Peer[], fast: ReadonlySet<string>, mtus: ReadonlyMap<string, number>): boolean {
    let changed = false;
    for (const host of [...this.pathed.keys()]) if (!connected.some((p) => p.host === host)) this.pathed.delete(host);
    for (const p of connected) {
      const sleeveMtu = mtus.get(p.host);
      if (sleeveMtu === undefined) continue; // the route could not be read: said by the pass
      const next: PeerPath = fast.has(p.host)
        ? { path: 'fastpath', mtu: sleeveMtu + SLEEVE_OVERHEAD - VXLAN_OVERHEAD, reason: this.reason(p.host) }
        : { path: 'sleeve', mtu: sleeveMtu, reason: this.reason(p.host) };
      const was = this.pathed.get(p.host);
      if (was?.path === next.path && was.mtu === next.mtu) {
        was.reason = next.reason;
        continue;
      }
      if (was && was.path !== next.path) changed = true;
      this.pathed.set(p.host, next);
      this.d.log.info({ peer: p.host, ...next }, 'peer path');
      this.d.events.publish('peer.path', { peer: p.host, ...next });
    }
    return changed;
  }

  private reason(host: string): string {
    const fp = this.d.fastPath;
    return 'off' in fp ? fp.off : (this.guardFailure ?? fp.probe.state(host).reason);
  }
}

/** Runs `step`, keeping its failure for the end of the pass so the other steps still run. */
async function attempt(failures: unknown[], step: () => Promise<void>): Promise<boolean> {
  try {
    await step();
    return true;
  } catch (err) {
    failures.push(err);
    return false;
  }
}
