import { isIP } from 'node:net';
import { InvalidRequestError, UnavailableError } from '@weave/errors';
import { CommandOptions, Commands, KernelCommandError, reasonOf } from '@weave/kernel-cmd';
import { canonicalIp } from './vxlan';

/**
 * The kernel filters around the fast path, as data first (pure, table-tested) and then the
 * commands that apply them.
 *
 * - ebtables, chain WEAVE-FASTPATH (entered from the top of INPUT, FORWARD and OUTPUT): every
 *   host's bridge answers for its network's gateway with a MAC in 7a:57:…, so a frame with such
 *   a source must never leave through a VXLAN port, nor be taken from one; otherwise each
 *   host's bridge would learn the gateway behind the others. Then multicast beyond the link:
 *   IPv4 to 01:00:5e:00:00:00/25 outside 224.0.0.0/24 and IPv6 to 33:33:… outside ff02::/16
 *   (the sleeve's `core::multicast`) neither leaves through a VXLAN port nor is taken from one,
 *   except for the devices of networks made with `-o weave.multicast=true`. The exceptions come
 *   first and RETURN (hence after the gateway rules), then the drops match every `wvx+`: a device
 *   the router has not listed yet, or a leftover, carries no multicast, as by default.
 * - iptables (ip6tables for an IPv6 underlay), chain WEAVE-VXLAN, entered from the top of INPUT
 *   for the VXLAN port: peers RETURN (on to the host's own rules, which may still refuse them:
 *   the probe then sees it), anyone else is dropped, since VXLAN has no authentication.
 *
 * Each is read with one listing; when it differs, it is rewritten with one `*-restore --noflush`
 * transaction that flushes and refills our chain and fixes the jumps, so the kernel never holds
 * a half-written set (no moment where a staying peer is dropped).
 */
export const GuardChains = { frames: 'WEAVE-FASTPATH', vxlan: 'WEAVE-VXLAN' } as const;

/** The anycast gateway MACs (7a:57:<wire id>) as an ebtables source match. */
export const GATEWAY_MACS = '7a:57:00:00:00:00/ff:ff:00:00:00:00';
/** IPv4 and IPv6 multicast MACs as ebtables destination matches. */
export const MULTICAST_MACS = { v4: '01:00:5e:00:00:00/ff:ff:ff:80:00:00', v6: '33:33:00:00:00:00/ff:ff:00:00:00:00' } as const;
const VXLAN_DEVICE = /^wvx[0-9a-f]{8}$/;

export interface FastPathGuard {
  /**
   * Installs or corrects both filters: only `peers` may send VXLAN to `port`; `local` picks the
   * family; multicast beyond the link crosses the VXLAN devices in `multicast` only (default none).
   */
  guard(o: { local: string; port: number; peers: readonly string[]; multicast?: readonly string[] }): Promise<void>;
  /** Removes every rule and chain of ours (both families), for a router that stops using the fast path. */
  remove(): Promise<void>;
}

/** A chain's rules, as `ebtables-save` / `iptables -S` print them after `-A <chain> `. */
export interface Listing {
  chains: Set<string>;
  rules: Array<{ chain: string; rule: string }>;
}

export function parseListing(text: string): Listing {
  const chains = new Set<string>();
  const rules: Listing['rules'] = [];
  for (const line of text.split('\n')) {
    // `:CHAIN POLICY` (ebtables-save), `-N CHAIN` / `-P CHAIN POLICY` (iptables -S).
    const decl = /^(?::|-N |-P )(\S+)/.exec(line);
    if (decl) chains.add(decl[1]!);
    const rule = /^-A (\S+) (.*)$/.exec(line.trim());
    if (rule) rules.push({ chain: rule[1]!, rule: rule[2]! });
  }
  return { chains, rules };
}

interface Wanted {
  chain: string;
  /** The chain's policy line in a restore file. */
  declare: string;
  rules: string[];
  /** Where the jump into the chain must be, and how. */
  jumps: Array<{ from: string; rule: string }>;
  /** Other jumps into the chain (a port no longer used), to remove. */
  isJump(r: { chain: string; rule: string }): boolean;
}

/** The frame filter; `multicast`: the VXLAN devices that carry multicast beyond the link. */
export function frameFilter(multicast: readonly string[] = []): Wanted {
  const c = GuardChains.frames;
  const bad = multicast.find((d) => !VXLAN_DEVICE.test(d));
  if (bad !== undefined) throw new InvalidRequestError(`${JSON.stringify(bad)} is not a weave VXLAN device`);
  const carried = [...new Set(multicast)].sort().flatMap((d) => [`-o ${d} -j RETURN`, `-i ${d} -j RETURN`]);
  return {
    chain: c,
    declare: `:${c} RETURN`,
    // As ebtables-save prints them (-p, -s/-d, -i/-o, matches, -j), so a listing compares equal.
    // Only frames into or out of a VXLAN port get here (the jumps say so), and every frame of the
    // fast path passes these rules on two hosts: a unicast one leaves after three, so small packets
    // pay next to nothing for the multicast rules.
    rules: [
      // One rule per direction, so each host's counters say which way a gateway frame was going.
      `-s ${GATEWAY_MACS} -o wvx+ -j DROP`,
      `-s ${GATEWAY_MACS} -i wvx+ -j DROP`,
      '-d Unicast -j RETURN',
      `-p IPv4 -d ${MULTICAST_MACS.v4} --ip-dst 224.0.0.0/24 -j RETURN`,
      `-p IPv6 -d ${MULTICAST_MACS.v6} --ip6-dst ff02::/16 -j RETURN`,
      ...carried,
      `-d ${MULTICAST_MACS.v4} -j DROP`,
      `-d ${MULTICAST_MACS.v6} -j DROP`,
    ],
    jumps: [
      { from: 'INPUT', rule: `-i wvx+ -j ${c}` },
      { from: 'FORWARD', rule: `-i wvx+ -j ${c}` },
      { from: 'FORWARD', rule: `-o wvx+ -j ${c}` },
      { from: 'OUTPUT', rule: `-o wvx+ -j ${c}` },
    ],
    isJump: (r) => r.chain !== c && r.rule.endsWith(`-j ${c}`),
  };
}

export function vxlanFilter(family: 4 | 6, port: number, peers: readonly string[]): Wanted {
  const c = GuardChains.vxlan;
  const bits = family === 4 ? 32 : 128;
  const sources = [...new Set(peers.map((p) => canonicalIp(p, 'VXLAN peer')))].sort();
  const wrong = sources.find((s) => isIP(s) !== family);
  if (wrong) throw new InvalidRequestError(`VXLAN peer ${wrong} is not IPv${family} like this host's underlay address`);
  return {
    chain: c,
    declare: `:${c} - [0:0]`,
    rules: [...sources.map((s) => `-s ${s}/${bits} -j RETURN`), '-j DROP'],
    jumps: [{ from: 'INPUT', rule: `-p udp -m udp --dport ${port} -j ${c}` }],
    isJump: (r) => r.chain !== c && r.rule.endsWith(`-j ${c}`),
  };
}

/**
 * The `*-restore --noflush` input that turns `have` into `want`, or null when it already is.
 * Declaring the chain creates or flushes it inside the transaction; jumps go to the top.
 */
export function restoreScript(have: Listing, want: Wanted): string | null {
  const own = have.rules.filter((r) => r.chain === want.chain).map((r) => r.rule);
  const chainOk = have.chains.has(want.chain) && own.length === want.rules.length && own.every((r, i) => r === want.rules[i]);
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const r of have.rules.filter(want.isJump)) {
    const key = `${r.chain} ${r.rule}`;
    const wanted = want.jumps.some((j) => j.from === r.chain && j.rule === r.rule);
    // Duplicates and stale ports go; -D removes one match each time.
    if (!wanted || seen.has(key)) lines.push(`-D ${r.chain} ${r.rule}`);
    seen.add(key);
  }
  for (const j of want.jumps) if (!seen.has(`${j.from} ${j.rule}`)) lines.push(`-I ${j.from} 1 ${j.rule}`);
  if (chainOk && !lines.length) return null;
  return ['*filter', want.declare, ...want.rules.map((r) => `-A ${want.chain} ${r}`), ...lines, 'COMMIT', ''].join('\n');
}

/** The kernel's: ebtables-save / iptables -S to read, one restore transaction to change. */
export class LinuxFastPathGuard implements FastPathGuard {
  private readonly cmd: Commands;
  private cleanedOtherFamily = false;

  constructor(o: CommandOptions = {}) {
    this.cmd = new Commands(o);
  }

  async guard(o: { local: string; port: number; peers: readonly string[]; multicast?: readonly string[] }): Promise<void> {
    const family = isIP(o.local);
    if (family !== 4 && family !== 6) throw new InvalidRequestError(`local address ${JSON.stringify(o.local)} is not an IP address`);
    if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new InvalidRequestError(`VXLAN port ${o.port} is not a UDP port`);
    await this.apply('ebtables', frameFilter(o.multicast));
    await this.apply(family === 4 ? 'iptables' : 'ip6tables', vxlanFilter(family, o.port, o.peers));
    if (!this.cleanedOtherFamily) {
      // An underlay that changed family leaves the old family's chain behind: once per start.
      await this.removeFrom(family === 4 ? 'ip6tables' : 'iptables', GuardChains.vxlan);
      this.cleanedOtherFamily = true;
    }
  }

  async remove(): Promise<void> {
    await this.removeFrom('ebtables', GuardChains.frames);
    await this.removeFrom('iptables', GuardChains.vxlan);
    await this.removeFrom('ip6tables', GuardChains.vxlan);
  }

  private async apply(tool: Tool, want: Wanted): Promise<void> {
    const script = restoreScript(await this.listing(tool), want);
    if (script === null) return;
    try {
      await this.cmd.run(`${tool}-restore`, tool === 'ebtables' ? ['--noflush'] : ['-w', '5', '--noflush'], script);
    } catch (e) {
      throw new UnavailableError(`cannot install the ${tool} chain ${want.chain}: ${reasonOf(e)}`, { cause: e });
    }
  }

  private async removeFrom(tool: Tool, chain: string): Promise<void> {
    let have: Listing;
    try {
      have = await this.listing(tool);
    } catch (e) {
      // No such program on this host: it holds no rules of ours either.
      if (e instanceof UnavailableError && e.cause instanceof KernelCommandError && e.cause.notInstalled) return;
      throw e;
    }
    const jumps = have.rules.filter((r) => r.chain !== chain && r.rule.endsWith(`-j ${chain}`));
    const wait = tool === 'ebtables' ? [] : ['-w', '5'];
    try {
      for (const j of jumps) await this.cmd.run(tool, [...wait, '-D', j.chain, ...j.rule.split(' ')]);
      if (have.chains.has(chain)) {
        await this.cmd.run(tool, [...wait, '-F', chain]);
        await this.cmd.run(tool, [...wait, '-X', chain]);
      }
    } catch (e) {
      throw new UnavailableError(`cannot remove the ${tool} chain ${chain}: ${reasonOf(e)}`, { cause: e });
    }
  }

  private async listing(tool: Tool): Promise<Listing> {
    try {
      const out = tool === 'ebtables' ? await this.cmd.run('ebtables-save', ['-t', 'filter']) : await this.cmd.run(tool, ['-w', '5', '-t', 'filter', '-S']);
      return parseListing(out);
    } catch (e) {
      throw new UnavailableError(`cannot list the ${tool} filter table: ${reasonOf(e)}`, { cause: e });
    }
  }
}

type Tool = 'ebtables' | 'iptables' | 'ip6tables';
