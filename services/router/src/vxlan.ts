import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { InvalidRequestError, UnavailableError } from '@weave/errors';
import { z } from 'zod';
import { CommandOptions, Commands, isNoDevice, reasonOf } from '@weave/kernel-cmd';

export { vxlanName } from './path-plan';

const OWN_NAME = /^wvx[0-9a-f]{8}$/;
const FLOOD_MAC = '00:00:00:00:00:00';

/** One network's VXLAN device as it must be. */
export interface FastPathSpec {
  name: string;
  vni: number;
  /** This host's underlay address: the outer source, and the family VXLAN runs over. */
  local: string;
  /** The VXLAN UDP port, the same on every host. */
  port: number;
  bridge: string;
  mtu: number;
}

/** The kernel fast path of each network; a seam so the data path can be tested without a kernel. */
export interface FastPathPlumbing {
  /** Creates or corrects the device: VXLAN with learning, on `bridge`, isolated, up. Cheap when it already is. */
  ensure(spec: FastPathSpec): Promise<void>;
  /** Makes the flood entries exactly `peers` (underlay addresses) and forgets anything learned from others. */
  setPeers(name: string, peers: readonly string[]): Promise<void>;
  /** Deletes the device; nothing when it is already gone. */
  remove(name: string): Promise<void>;
  /** Our VXLAN devices present, for removing those of networks that are gone (also after a crash). */
  list(): Promise<string[]>;
  /**
   * Isolates a bridge port: isolated ports never forward to each other, so the VXLAN device and
   * the sleeve's TAP on one bridge cannot relay a frame from one path into the other.
   */
  isolate(port: string): Promise<void>;
}

/**
 * The kernel's: one `ip -d -j link show` to check, `ip`/`bridge` to change. A new device is put
 * on its bridge and isolated while still down, so it never forwards as an ordinary port; if a
 * step fails, the device is deleted again. Learning stays on: the kernel learns which host each
 * remote MAC is behind from the packets it receives, and floods to every peer until then.
 */
export class LinuxFastPathPlumbing implements FastPathPlumbing {
  private readonly cmd: Commands;

  constructor(o: CommandOptions = {}) {
    this.cmd = new Commands(o);
  }

  async ensure(s: FastPathSpec): Promise<void> {
    checkSpec(s);
    let have = await this.read(s.name);
    if (have && !sameTunnel(have, s)) {
      // VNI, address and port are fixed at creation, and a device moved to another bridge
      // would forward unisolated until isolated again: both are rare, so start over.
      await this.step(`cannot replace VXLAN device ${s.name}`, ['link', 'del', 'dev', s.name]);
      have = null;
    }
    if (!have) return this.create(s);
    if (have.mtu !== s.mtu) await this.step(`cannot set the MTU of ${s.name} to ${s.mtu}`, ['link', 'set', 'dev', s.name, 'mtu', String(s.mtu)]);
    if (!have.isolated) await this.isolate(s.name);
    if (!have.up) await this.step(`cannot bring ${s.name} up`, ['link', 'set', 'dev', s.name, 'up']);
  }

  async setPeers(name: string, peers: readonly string[]): Promise<void> {
    const want = new Set(peers.map((p) => canonicalIp(p, `peer address of ${name}`)));
    const entries = await this.fdb(name);
    const flooded = new Set(entries.filter((e) => e.mac === FLOOD_MAC).map((e) => e.dst));
    const add = [...want].filter((a) => !flooded.has(a)).map((a) => `fdb append ${FLOOD_MAC} dev ${name} dst ${a}`);
    // New peers first, so the ones that stay are never without their entry.
    if (add.length) await this.bridgeBatch(`cannot add flood entries to ${name}`, add, false);
    const stale = entries.filter((e) => !want.has(e.dst));
    if (!stale.length) return;
    // -force: a learned entry that ages out meanwhile must not stop the rest; what is left decides.
    await this.bridgeBatch(`cannot remove entries of old peers from ${name}`, stale.map((e) => `fdb del ${e.mac} dev ${name} dst ${e.dst} self`), true).catch(() => undefined);
    // Only flood entries must be gone: a learned one comes back while the old peer still sends
    // to us (until it drops us too), and the kernel ages it out after that.
    const left = (await this.fdb(name)).filter((e) => e.mac === FLOOD_MAC && !want.has(e.dst));
    if (left.length) throw new UnavailableError(`cannot remove the flood entries of old peers from ${name}: ${left.map((e) => e.dst).join(', ')} remain`);
  }

  async remove(name: string): Promise<void> {
    if (!OWN_NAME.test(name)) throw new InvalidRequestError(`${JSON.stringify(name)} is not a weave VXLAN device`);
    try {
      await this.cmd.run('ip', ['link', 'del', 'dev', name]);
    } catch (e) {
      if (!isNoDevice(e)) throw new UnavailableError(`cannot delete VXLAN device ${name}: ${reasonOf(e)}`, { cause: e });
    }
  }

  async list(): Promise<string[]> {
    const links = IpLinks.parse(JSON.parse((await this.cmd.run('ip', ['-j', 'link', 'show', 'type', 'vxlan'])) || '[]'));
    return links.map((l) => l.ifname).filter((n) => OWN_NAME.test(n)).sort();
  }

  async isolate(port: string): Promise<void> {
    // In our own namespace sysfs answers without a process (the data path asks every pass).
    if (this.cmd.netns === null && (await readFile(`/sys/class/net/${port}/brport/isolated`, 'utf8').catch(() => '')).trim() === '1') return;
    try {
      await this.cmd.run('bridge', ['link', 'set', 'dev', port, 'isolated', 'on']);
    } catch (e) {
      throw new UnavailableError(`cannot isolate bridge port ${port}: ${reasonOf(e)}`, { cause: e });
    }
  }

  private async create(s: FastPathSpec): Promise<void> {
    // ttl 64 rather than the inner packet's; df unset: an underlay narrower than computed
    // fragments the outer packet instead of losing it.
    const tunnel = ['id', String(s.vni), 'local', s.local, 'dstport', String(s.port), 'learning', 'ttl', '64', 'df', 'unset'];
    await this.step(`cannot create VXLAN device ${s.name} (vni ${s.vni}, local ${s.local}, port ${s.port})`, ['link', 'add', s.name, 'type', 'vxlan', ...tunnel]);
    try {
      await this.step(`cannot put ${s.name} on ${s.bridge}`, ['link', 'set', 'dev', s.name, 'mtu', String(s.mtu), 'master', s.bridge]);
      await this.isolate(s.name);
      await this.step(`cannot bring ${s.name} up`, ['link', 'set', 'dev', s.name, 'up']);
    } catch (e) {
      await this.cmd.run('ip', ['link', 'del', 'dev', s.name]).catch(() => undefined);
      throw e;
    }
  }

  private async read(name: string): Promise<Current | null> {
    let out: string;
    try {
      out = await this.cmd.run('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
    } catch (e) {
      if (isNoDevice(e)) return null;
      throw new UnavailableError(`cannot read VXLAN device ${name}: ${reasonOf(e)}`, { cause: e });
    }
    const l = IpLinks.parse(JSON.parse(out || '[]'))[0];
    if (!l) return null;
    const data = l.linkinfo?.info_data;
    return {
      kind: l.linkinfo?.info_kind ?? null,
      vni: data?.id ?? null,
      local: data?.local ?? data?.local6 ?? null,
      port: data?.port ?? null,
      master: l.master ?? null,
      mtu: l.mtu,
      up: l.flags.includes('UP'),
      isolated: l.linkinfo?.info_slave_data?.isolated === true,
    };
  }

  /** The device's FDB entries that point at a remote address (flood and learned alike). */
  private async fdb(name: string): Promise<Array<{ mac: string; dst: string }>> {
    let out: string;
    try {
      out = await this.cmd.run('bridge', ['-j', 'fdb', 'show', 'dev', name]);
    } catch (e) {
      throw new UnavailableError(`cannot read the FDB of ${name}: ${reasonOf(e)}`, { cause: e });
    }
    return FdbEntries.parse(JSON.parse(out || '[]')).flatMap((e) => (e.dst ? [{ mac: e.mac, dst: canonicalIp(e.dst, `FDB entry of ${name}`) }] : []));
  }

  private async bridgeBatch(what: string, lines: string[], force: boolean): Promise<void> {
    try {
      await this.cmd.run('bridge', [...(force ? ['-force'] : []), '-batch', '-'], lines.join('\n') + '\n');
    } catch (e) {
      throw new UnavailableError(`${what}: ${reasonOf(e)}`, { cause: e });
    }
  }

  private async step(what: string, args: string[]): Promise<void> {
    try {
      await this.cmd.run('ip', args);
    } catch (e) {
      throw new UnavailableError(`${what}: ${reasonOf(e)}`, { cause: e });
    }
  }
}

/** An IP address in one spelling (`::1` for `0:0::1`), so addresses from us and from the kernel compare. */
export function canonicalIp(address: string, what = 'address'): string {
  const family = isIP(address);
  if (!family) throw new InvalidRequestError(`${what} ${JSON.stringify(address)} is not an IP address`);
  return family === 4 ? address : new URL(`http://[${address}]`).hostname.slice(1, -1);
}

interface Current {
  kind: string | null;
  vni: number | null;
  local: string | null;
  port: number | null;
  master: string | null;
  mtu: number;
  up: boolean;
  isolated: boolean;
}

const sameTunnel = (c: Current, s: FastPathSpec): boolean =>
  c.kind === 'vxlan' && c.vni === s.vni && c.port === s.port && c.master === s.bridge && c.local !== null && canonicalIp(c.local) === canonicalIp(s.local);

function checkSpec(s: FastPathSpec): void {
  const bad = (what: string) => new InvalidRequestError(`VXLAN device ${JSON.stringify(s.name)}: ${what}`);
  if (!OWN_NAME.test(s.name)) throw bad('not a weave VXLAN name (wvx + 8 hex digits)');
  // 0xFFFFFF is the probe's (fastpath-probe.ts); no pool base >> 8 reaches it.
  if (!Number.isInteger(s.vni) || s.vni < 1 || s.vni >= 0xffffff) throw bad(`VNI ${s.vni} outside 1…16777214`);
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) throw bad(`port ${s.port} is not a UDP port`);
  if (!Number.isInteger(s.mtu) || s.mtu < 68 || s.mtu > 65535) throw bad(`MTU ${s.mtu} outside 68…65535`);
  canonicalIp(s.local, `local address of ${s.name}`);
}

// What we read from `ip -j` and `bridge -j`; loose, since iproute2 versions add fields freely.
const IpLinks = z.array(
  z.looseObject({
    ifname: z.string(),
    mtu: z.number().int(),
    master: z.string().optional(),
    flags: z.array(z.string()).default([]),
    linkinfo: z
      .looseObject({
        info_kind: z.string().optional(),
        info_data: z.looseObject({ id: z.number().optional(), local: z.string().optional(), local6: z.string().optional(), port: z.number().optional() }).optional(),
        info_slave_data: z.looseObject({ isolated: z.boolean().optional() }).optional(),
      })
      .optional(),
  }),
);
/** `bridge -j fdb show` entries; `dst` on a VXLAN device's remote ones. */
export const FdbEntries = z.array(z.looseObject({ mac: z.string(), dst: z.string().optional() }));
