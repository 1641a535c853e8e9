import { createSocket, Socket } from 'node:dgram';
import { access, readFile, writeFile } from 'node:fs/promises';
import { describeError, UnavailableError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';
import { Commands, isNoDevice, reasonOf } from '@weave/kernel-cmd';
import { EchoTable, PeerVerdict, probeAddressOf, probeMacOf, ProbePeer, VerdictChange } from './fastpath-echo';
import { canonicalIp, FdbEntries } from './vxlan';

export type { PeerVerdict, ProbePeer } from './fastpath-echo';

/** The probe's VXLAN device: one per host, on no bridge. */
export const PROBE_DEVICE = 'wvprobe';
/** Its VNI: networks use pool base >> 8, and no pool starts at 255.255.255.0. */
export const PROBE_VNI = 0xffffff;

/**
 * Whether VXLAN to each peer works right now: what the data path asks before it puts a peer on
 * the fast path. A seam, so the data path can be tested with a fake.
 */
export interface PeerProbe {
  setPeers(peers: readonly ProbePeer[]): Promise<void>;
  /** The verdict on `host`; one not (yet) given to setPeers is down, saying so. */
  state(host: string): PeerVerdict;
  /** Called when a peer's verdict (up, or the reason) changes; not when peers are added. Returns the unsubscribe. */
  onChange(cb: (host: string, up: boolean, reason: string) => void): () => void;
  stop(): Promise<void>;
}

/** The probe's device in the kernel; a seam for tests that fake the kernel. */
export interface ProbeDevice {
  /**
   * Creates the device afresh (a leftover from a crash goes first) with this host's probe MAC
   * and link-local address. Throws ProbeUnavailableError when the kernel cannot do it at all.
   */
  create(o: { local: string; port: number; mac: string; address: string }): Promise<void>;
  /** Points each peer's probe MAC and address at its underlay address, and only theirs. */
  setPeers(peers: ReadonlyArray<{ mac: string; address: string; underlay: string }>): Promise<void>;
  remove(): Promise<void>;
}

/** The fast path cannot be probed on this host; the message says why, for `weave status`. */
export class ProbeUnavailableError extends UnavailableError {}

export interface FastPathProbeOptions {
  /** This host's underlay address. */
  localAddress: string;
  localPeerId: bigint;
  vxlanPort: number;
  /** The UDP port echoes use inside the probe's VXLAN; default 6785. */
  echoPort?: number;
  intervalMs?: number;
  downAfterMs?: number;
  log: Logger;
  now?: () => number;
  device?: ProbeDevice;
}

/**
 * Sends an echo request over VXLAN to every peer each interval and answers theirs; a peer is up
 * while its replies come within `downAfterMs`. The echoes ride a VXLAN device of their own with
 * the networks' UDP port, so they cross the same socket, firewalls and underlay as the networks'
 * frames, and find a blocked port within interval + downAfterMs (4 s by default), a healed one
 * within an interval. Static FDB and neighbour entries per peer: no flooding, no neighbour
 * discovery to wait for after a heal.
 *
 * A host where probing is impossible (IPv6 off, the device refused) still gets a probe: every
 * peer is down with that reason, so the data path falls back to the sleeve visibly.
 */
export class FastPathProbe implements PeerProbe {
  private why: string | null = null;
  private readonly table: EchoTable;
  private readonly listeners = new Set<(host: string, up: boolean, reason: string) => void>();
  private readonly now: () => number;
  private readonly echoPort: number;
  private socket: Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private deviceWork: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(
    private readonly o: FastPathProbeOptions,
    private readonly device: ProbeDevice,
  ) {
    this.now = o.now ?? Date.now;
    this.echoPort = o.echoPort ?? 6785;
    this.table = new EchoTable({ localPeerId: o.localPeerId, vxlanPort: o.vxlanPort, downAfterMs: o.downAfterMs ?? 3000 });
  }

  static async start(o: FastPathProbeOptions): Promise<FastPathProbe> {
    const [interval, downAfter] = [o.intervalMs ?? 1000, o.downAfterMs ?? 3000];
    if (!(interval > 0 && downAfter > interval)) throw new RangeError(`the probe needs 0 < intervalMs (${interval}) < downAfterMs (${downAfter})`);
    const local = canonicalIp(o.localAddress, 'the underlay address');
    const p = new FastPathProbe(o, o.device ?? new LinuxProbeDevice());
    const address = probeAddressOf(o.localPeerId);
    try {
      await p.device.create({ local, port: o.vxlanPort, mac: probeMacOf(o.localPeerId), address });
      p.socket = await openSocket(address, p.echoPort, (msg, from) => p.received(msg, from), o.log);
    } catch (e) {
      const reason = e instanceof ProbeUnavailableError ? e.message : `the VXLAN probe could not be set up: ${describeError(e)}`;
      o.log.warn({ err: e }, `fast path unavailable, every peer uses the sleeve: ${reason}`);
      p.why = reason;
      p.table.disable(reason, p.now());
      await p.device.remove().catch(() => undefined);
    }
    if (!p.why) {
      p.timer = setInterval(() => p.tick(), interval);
      p.tick();
    }
    return p;
  }

  async setPeers(peers: readonly ProbePeer[]): Promise<void> {
    const list = peers.filter((p) => p.peerId !== this.o.localPeerId).map((p) => ({ ...p, address: canonicalIp(p.address, `address of ${p.host}`) }));
    const added = list.filter((p) => !this.table.state(p.host));
    this.table.setPeers(list, this.now());
    if (this.why || this.stopped) return;
    const entries = list.map((p) => ({ mac: probeMacOf(p.peerId), address: probeAddressOf(p.peerId), underlay: p.address }));
    // Calls apply in order, each after the last finished, also when one failed.
    const work = this.deviceWork.then(() => this.device.setPeers(entries));
    this.deviceWork = work.catch(() => undefined);
    await work;
    for (const p of added) this.send(p, this.table.requestTo(p.host));
  }

  /** Why the fast path cannot be probed on this host, or null when it can. */
  get unavailable(): string | null {
    return this.why;
  }

  state(host: string): PeerVerdict {
    return this.table.state(host) ?? notProbed(host, this.now());
  }

  onChange(cb: (host: string, up: boolean, reason: string) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const s = this.socket;
    this.socket = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
    await this.deviceWork;
    if (!this.why) await this.device.remove();
  }

  private tick(): void {
    const { send, changes } = this.table.tick(this.now());
    this.emit(changes);
    for (const { peer, packet } of send) this.send(peer, packet);
  }

  private send(peer: ProbePeer, packet: Buffer | null): void {
    if (!packet) return;
    this.socket?.send(packet, this.echoPort, `${probeAddressOf(peer.peerId)}%${PROBE_DEVICE}`, (err) => {
      if (err) this.table.sendFailed(peer.host, err.message);
    });
  }

  private received(msg: Buffer, from: { address: string; port: number }): void {
    const { reply, changes } = this.table.receive(this.now(), from.address.replace(/%.*$/, ''), msg);
    if (reply) this.socket?.send(reply, from.port, from.address.includes('%') ? from.address : `${from.address}%${PROBE_DEVICE}`);
    this.emit(changes);
  }

  private emit(changes: VerdictChange[]): void {
    for (const c of changes) {
      this.o.log.info({ peer: c.host, up: c.up }, `fast path to ${c.host} ${c.up ? 'works' : 'down'}: ${c.reason}`);
      for (const cb of this.listeners) {
        try {
          cb(c.host, c.up, c.reason);
        } catch (err) {
          this.o.log.error({ err }, 'a fast path probe listener failed');
        }
      }
    }
  }
}

/** The verdict on a host the probe was not given. */
export const notProbed = (host: string, now: number): PeerVerdict => ({ up: false, reason: `VXLAN to ${host} is not probed: not a peer yet`, since: now });

function openSocket(address: string, port: number, onMessage: (msg: Buffer, from: { address: string; port: number }) => void, log: Logger): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: 'udp6' });
    s.once('error', (e) => {
      s.close();
      reject(new ProbeUnavailableError(`cannot listen for VXLAN probes on [${address}%${PROBE_DEVICE}]:${port}: ${e.message}`, { cause: e }));
    });
    s.bind({ address: `${address}%${PROBE_DEVICE}`, port, exclusive: true }, () => {
      s.removeAllListeners('error');
      s.on('error', (err) => log.warn({ err }, 'fast path probe socket error'));
      s.on('message', onMessage);
      resolve(s);
    });
  });
}

/**
 * The kernel's. The device is VXLAN on the networks' port, learning off (the static entries say
 * all there is), with IPv6 switched on for it alone when the host's default is off, and no
 * address of the kernel's own choosing: only the one derived from our peer id, without DAD.
 */
export class LinuxProbeDevice implements ProbeDevice {
  private readonly cmd = new Commands();

  async create(o: { local: string; port: number; mac: string; address: string }): Promise<void> {
    if (!(await exists('/proc/sys/net/ipv6'))) throw new ProbeUnavailableError('IPv6 is disabled on this host (ipv6.disable=1), the fast path cannot be probed');
    await this.remove();
    const tunnel = ['id', String(PROBE_VNI), 'local', o.local, 'dstport', String(o.port), 'nolearning', 'ttl', '64'];
    await this.ip(`cannot create the probe device ${PROBE_DEVICE}`, ['link', 'add', PROBE_DEVICE, 'address', o.mac, 'type', 'vxlan', ...tunnel]);
    try {
      await enableIpv6();
      await this.ip(`cannot bring ${PROBE_DEVICE} up`, ['link', 'set', 'dev', PROBE_DEVICE, 'addrgenmode', 'none', 'up']);
      await this.ip(`cannot give ${PROBE_DEVICE} its address`, ['addr', 'add', `${o.address}/64`, 'dev', PROBE_DEVICE, 'nodad']);
    } catch (e) {
      await this.remove().catch(() => undefined);
      throw e;
    }
  }

  async setPeers(peers: ReadonlyArray<{ mac: string; address: string; underlay: string }>): Promise<void> {
    // Compared with what the kernel holds, not with what we last did: a failed call leaves nothing to remember.
    const [fdb, neigh] = await Promise.all([this.read('bridge', ['-j', 'fdb', 'show', 'dev', PROBE_DEVICE]), this.read('ip', ['-j', '-6', 'neigh', 'show', 'dev', PROBE_DEVICE])]);
    const dsts = new Map(FdbEntries.parse(fdb).flatMap((e) => (e.dst ? [[e.mac, canonicalIp(e.dst)] as const] : [])));
    const macs = new Map(Neighbours.parse(neigh).flatMap((n) => (n.state.includes('PERMANENT') ? [[n.dst, n.lladdr ?? ''] as const] : [])));
    const fdbLines: string[] = [];
    const neighLines: string[] = [];
    for (const p of peers) {
      if (dsts.get(p.mac) !== p.underlay) fdbLines.push(`fdb replace ${p.mac} dev ${PROBE_DEVICE} dst ${p.underlay} self permanent`);
      if (macs.get(p.address) !== p.mac) neighLines.push(`neigh replace ${p.address} lladdr ${p.mac} dev ${PROBE_DEVICE} nud permanent`);
    }
    for (const mac of dsts.keys()) if (!peers.some((p) => p.mac === mac)) fdbLines.push(`fdb del ${mac} dev ${PROBE_DEVICE} self`);
    for (const address of macs.keys()) if (!peers.some((p) => p.address === address)) neighLines.push(`neigh del ${address} dev ${PROBE_DEVICE}`);
    if (fdbLines.length) await this.batch('bridge', fdbLines);
    if (neighLines.length) await this.batch('ip', neighLines);
  }

  async remove(): Promise<void> {
    try {
      await this.cmd.run('ip', ['link', 'del', 'dev', PROBE_DEVICE]);
    } catch (e) {
      if (!isNoDevice(e)) throw new UnavailableError(`cannot delete the probe device ${PROBE_DEVICE}: ${reasonOf(e)}`, { cause: e });
    }
  }

  private async read(tool: 'ip' | 'bridge', args: string[]): Promise<unknown> {
    try {
      return JSON.parse((await this.cmd.run(tool, args)) || '[]');
    } catch (e) {
      throw new UnavailableError(`cannot read the entries of ${PROBE_DEVICE}: ${reasonOf(e)}`, { cause: e });
    }
  }

  private async batch(tool: 'ip' | 'bridge', lines: string[]): Promise<void> {
    try {
      await this.cmd.run(tool, ['-batch', '-'], lines.join('\n') + '\n');
    } catch (e) {
      throw new UnavailableError(`cannot point ${PROBE_DEVICE} at the peers: ${reasonOf(e)}`, { cause: e });
    }
  }

  private async ip(what: string, args: string[]): Promise<void> {
    try {
      await this.cmd.run('ip', args);
    } catch (e) {
      throw new ProbeUnavailableError(`${what}: ${reasonOf(e)}`, { cause: e });
    }
  }
}

/** IPv6 on the probe device even when new devices get none by default; it carries nothing but echoes. */
async function enableIpv6(): Promise<void> {
  const knob = `/proc/sys/net/ipv6/conf/${PROBE_DEVICE}/disable_ipv6`;
  try {
    if ((await readFile(knob, 'utf8')).trim() !== '0') await writeFile(knob, '0');
  } catch (e) {
    throw new ProbeUnavailableError(`IPv6 is disabled on this host and cannot be enabled on ${PROBE_DEVICE} (${describeError(e)}), the fast path cannot be probed`, { cause: e });
  }
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

const Neighbours = z.array(z.looseObject({ dst: z.string(), lladdr: z.string().optional(), state: z.array(z.string()).default([]) }));
