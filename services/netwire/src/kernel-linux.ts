import { access } from 'node:fs/promises';
import { z } from 'zod';
import { UnavailableError } from '@weave/errors';
import { bridgeOfTag, bridgeRules, Family, ipv6Counterparts, jumpRules, ownChains, ownChainsV6, parseRuleLine, Rule, sameSpec, Table } from './firewall';
import { BridgeFirewall, Kernel, KernelCommandError, LinkInfo, ownerAlias } from './kernel';
import { EndpointPorts, HeldPort, heldByNat, heldBySockets, parsePortRange, PortRange, portOwnerOf, portRules, servesLoopback } from './ports';

import { Commands, type Exec, routeOf } from '@weave/kernel-cmd';

export type { Exec };

export interface LinuxKernelOptions {
  /**
   * A named network namespace (/run/netns/<name>) to work in instead of our own: tests use
   * throwaway ones, and a simulated host runs its netwire against its own.
   */
  netns?: string | null;
  exec?: Exec;
  /**
   * Where the namespace's /proc/sys/net/ipv4/conf can be written: in a container /proc/sys is
   * read-only, so compose mounts the host's elsewhere (WEAVE_IPV4_CONF_DIR).
   */
  ipv4ConfDir?: string;
}

export const IPV4_CONF_DIR = '/proc/sys/net/ipv4/conf';

/**
 * The kernel through iproute2 (`ip -j` for reading) and iptables. One process per command keeps
 * this simple and the commands easy to replay by hand; link changes are rare (per container start).
 */
export class LinuxKernel implements Kernel {
  private readonly cmd: Commands;
  private readonly ipv4ConfDir: string;
  private ipv6: Promise<boolean> | undefined;

  constructor(o: LinuxKernelOptions = {}) {
    // nsenter rather than `ip netns exec`, which also remounts /sys: the namespace is all we need.
    this.cmd = new Commands({ netns: o.netns, exec: o.exec });
    this.ipv4ConfDir = o.ipv4ConfDir ?? IPV4_CONF_DIR;
  }

  async listLinks(): Promise<LinkInfo[]> {
    const out = await this.run('ip', ['-j', '-d', 'link', 'show']);
    return IpLinks.parse(JSON.parse(out || '[]')).map((l) => ({
      name: l.ifname,
      kind: l.linkinfo?.info_kind ?? null,
      master: l.master ?? null,
      mtu: l.mtu,
      mac: l.address ?? '',
      up: l.flags.includes('UP'),
      owner: l.ifalias?.startsWith('weave:') ? l.ifalias.slice('weave:'.length) : null,
    }));
  }

  async underlayMtu(): Promise<number | null> {
    const routes = IpRoutes.parse(JSON.parse((await this.run('ip', ['-j', '-4', 'route', 'show', 'default'])) || '[]'));
    const dev = routes.find((r) => r.dev)?.dev;
    if (!dev) return null;
    return (await this.listLinks()).find((l) => l.name === dev)?.mtu ?? null;
  }

  async routeMtu(address: string): Promise<number | null> {
    const out = await this.run('ip', ['-j', 'route', 'get', address]).catch(() => '');
    let route: { dev: string; mtu: number | null };
    try {
      route = routeOf(JSON.parse(out || '[]'));
    } catch {
      return null; // no route to it
    }
    return route.mtu ?? (await this.listLinks()).find((l) => l.name === route.dev)?.mtu ?? null;
  }

  async createBridge(name: string, o: { mtu: number; mac: string; owner: string }): Promise<void> {
    await this.run('ip', ['link', 'add', 'name', name, 'address', o.mac, 'type', 'bridge']);
    // Set apart from the add: only an MTU set on a bridge that exists counts as the user's, and
    // the kernel otherwise moves it with its ports (back to 1500 when the last one goes).
    // The alias too: `ip link add … alias` is accepted and silently ignored.
    try {
      await this.run('ip', ['link', 'set', 'dev', name, 'mtu', String(o.mtu), 'alias', ownerAlias(o.owner)]);
    } catch (e) {
      await this.deleteLink(name).catch(() => undefined);
      throw e;
    }
  }

  async createVethPair(name: string, peer: string, o: { mtu: number; peerMac: string; owner: string; master: string }): Promise<void> {
    // One `ip` process for the whole endpoint: each process costs milliseconds, and this runs for
    // every container start. The add carries master and up in its single netlink request; the
    // alias (our ownership tag) cannot ride along (`add … alias` is silently ignored), so it is the
    // batch's second line. The container end needs no tag: it never outlives its host end.
    const mtu = String(o.mtu);
    const batch = [
      ['link', 'add', 'name', name, 'mtu', mtu, 'master', o.master, 'up', 'type', 'veth', 'peer', 'name', peer, 'mtu', mtu, 'address', o.peerMac],
      ['link', 'set', 'dev', name, 'alias', ownerAlias(o.owner)],
    ];
    try {
      await this.run('ip', ['-batch', '-'], batch.map((l) => l.join(' ')).join('\n') + '\n');
    } catch (e) {
      await this.deleteLink(name).catch(() => undefined);
      throw e;
    }
  }

  async linkExists(name: string): Promise<boolean> {
    // sysfs shows the namespace this process runs in; inside another namespace, ask ip.
    if (this.cmd.netns === null) return access(`/sys/class/net/${name}`).then(() => true, () => false);
    return this.unlessNoDevice(['link', 'show', 'dev', name]);
  }

  async setMaster(name: string, master: string): Promise<void> {
    await this.run('ip', ['link', 'set', 'dev', name, 'master', master]);
  }

  async setUp(name: string): Promise<void> {
    await this.run('ip', ['link', 'set', 'dev', name, 'up']);
  }

  async isolateLink(name: string): Promise<void> {
    await this.run('ip', ['link', 'set', 'dev', name, 'down', 'nomaster']);
  }

  async addAddress(name: string, address: string): Promise<void> {
    // `replace` makes a repeat harmless. No duplicate address detection for v6: the gateway
    // address is ours by construction, and DAD would keep it unusable for a second.
    const v6 = address.includes(':');
    await this.run('ip', ['addr', 'replace', address, 'dev', name, ...(v6 ? ['nodad'] : [])]);
  }

  deleteLink(name: string): Promise<boolean> {
    return this.unlessNoDevice(['link', 'del', 'dev', name]);
  }

  /** Runs `ip args`: true when it worked, false when the device does not exist. */
  private async unlessNoDevice(args: string[]): Promise<boolean> {
    try {
      await this.run('ip', args);
      return true;
    } catch (e) {
      if (e instanceof KernelCommandError && /Cannot find device|does not exist/i.test(e.stderr)) return false;
      throw e;
    }
  }

  async ensureFirewallChains(): Promise<void> {
    await this.ensureChains(4, ownChains, jumpRules);
    if (await this.hasIpv6()) await this.ensureChains(6, ownChainsV6, ipv6Counterparts(jumpRules));
  }

  private async ensureChains(family: Family, chains: ReadonlyArray<readonly [Table, string]>, jumps: readonly Rule[]): Promise<void> {
    for (const [table, chain] of chains) {
      try {
        await this.iptables(table, ['-N', chain], family);
      } catch (e) {
        if (!(e instanceof KernelCommandError && /exists/i.test(e.stderr))) throw e;
      }
    }
    for (const rule of jumps) await this.ensureRule(rule, family);
  }

  async ensureFirewall(f: BridgeFirewall): Promise<void> {
    const match = (spec: readonly string[]) => bridgeOfTag(spec) === f.bridge;
    const rules = bridgeRules(f);
    await this.makeTagged(match, rules);
    if (await this.hasIpv6()) await this.makeTagged(match, ipv6Counterparts(rules), 6);
  }

  async removeFirewall(bridge: string): Promise<void> {
    const match = (spec: readonly string[]) => bridgeOfTag(spec) === bridge;
    await this.makeTagged(match, []);
    if (await this.hasIpv6()) await this.makeTagged(match, [], 6);
  }

  async firewallBridges(): Promise<string[]> {
    const tagged = (spec: readonly string[]) => bridgeOfTag(spec) !== null;
    const all = [...(await this.taggedRules(tagged)), ...((await this.hasIpv6()) ? await this.taggedRules(tagged, 6) : [])];
    return [...new Set(all.map((r) => bridgeOfTag(r.spec)!))];
  }

  /**
   * Whether the namespace has IPv6 at all (not booted with ipv6.disable=1): without it there is no
   * ip6tables to fill, and no IPv6 traffic to keep apart. Asked once.
   */
  private hasIpv6(): Promise<boolean> {
    this.ipv6 ??= this.run('cat', ['/proc/sys/net/ipv6/conf/all/disable_ipv6']).then(
      () => true,
      (e: unknown) => {
        if (e instanceof KernelCommandError && /No such file/i.test(e.stderr)) return false;
        // Any other failure says nothing about IPv6: asked again next time.
        this.ipv6 = undefined;
        throw e;
      },
    );
    return this.ipv6;
  }

  async ensurePortRules(e: EndpointPorts): Promise<void> {
    if (e.ports.length > 0) {
      // The container reaching its own published port: the frame must go back out its own port.
      await this.run('ip', ['link', 'set', 'dev', e.hostVeth, 'type', 'bridge_slave', 'hairpin', 'on']);
      if (e.ports.some(servesLoopback)) await this.routeLocalnet(e.bridge);
    }
    await this.makeTagged((spec) => sameOwner(portOwnerOf(spec), e), portRules(e));
  }

  removePortRules(o: { bridge: string; hostVeth?: string }): Promise<void> {
    return this.makeTagged((spec) => sameOwner(portOwnerOf(spec), o), []);
  }

  async portRuleOwners(): Promise<Array<{ bridge: string; hostVeth: string }>> {
    const owners = (await this.taggedRules((spec) => portOwnerOf(spec) !== null)).map((r) => portOwnerOf(r.spec)!);
    return [...new Map(owners.map((o) => [`${o.bridge}/${o.hostVeth}`, o])).values()];
  }

  async portsInUse(): Promise<HeldPort[]> {
    const [nat, sockets] = await Promise.all([this.iptables('nat', ['-S']), this.run('ss', ['-H', '-l', '-n', '-t', '-u', '-p'])]);
    return [...heldByNat(nat), ...heldBySockets(sockets)];
  }

  async ephemeralPorts(): Promise<PortRange> {
    return parsePortRange(await this.run('cat', ['/proc/sys/net/ipv4/ip_local_port_range']));
  }

  /**
   * Lets the bridge carry the host's loopback traffic to published ports: without it the kernel
   * refuses to route a packet from 127.0.0.1 out of a bridge. (Its other effect, taking packets
   * for 127.0.0.0/8 in from the bridge, is undone by the raw table's DROP; see firewall.ts.)
   */
  private async routeLocalnet(bridge: string): Promise<void> {
    const knob = `${this.ipv4ConfDir}/${bridge}/route_localnet`;
    try {
      await this.run('tee', [knob], '1\n');
    } catch (e) {
      throw new UnavailableError(
        `published ports that answer on 127.0.0.1 need net.ipv4.conf.${bridge}.route_localnet=1, and ${knob} cannot be written` +
          ` (in a container /proc/sys is read-only: mount the host's ${IPV4_CONF_DIR} and set WEAVE_IPV4_CONF_DIR to it, as compose/host.yml does): ${e instanceof KernelCommandError ? e.stderr.trim() : String(e)}`,
        { cause: e },
      );
    }
  }

  /**
   * Makes the rules `match` picks out of our chains exactly `wanted`: stale ones go first (a
   * network that changed from internal, a subnet or port no longer there), then whatever is
   * missing is added, so the rules that stay are never absent in between.
   */
  private async makeTagged(match: (spec: readonly string[]) => boolean, wanted: readonly Rule[], family: Family = 4): Promise<void> {
    for (const have of await this.taggedRules(match, family)) {
      if (!wanted.some((w) => w.table === have.table && w.chain === have.chain && sameSpec(w.spec, have.spec))) await this.iptables(have.table, ['-D', have.chain, ...have.spec], family);
    }
    for (const rule of wanted) await this.ensureRule(rule, family);
  }

  /** The rules in our chains that `match` picks, as listed by `iptables -S`. */
  private async taggedRules(match: (spec: readonly string[]) => boolean, family: Family = 4): Promise<Rule[]> {
    const out: Rule[] = [];
    for (const [table, chain] of family === 4 ? ownChains : ownChainsV6) {
      let listing: string;
      try {
        listing = await this.iptables(table, ['-S', chain], family);
      } catch (e) {
        // No chain yet means no rules of ours in it.
        if (e instanceof KernelCommandError && /No chain|does not exist/i.test(e.stderr)) continue;
        throw e;
      }
      for (const line of listing.split('\n')) {
        const r = parseRuleLine(line);
        if (r && match(r.spec)) out.push({ table, chain: r.chain, position: 'last', spec: r.spec });
      }
    }
    return out;
  }

  private async ensureRule(r: Rule, family: Family = 4): Promise<void> {
    try {
      await this.iptables(r.table, ['-C', r.chain, ...r.spec], family);
      return;
    } catch (e) {
      if (!(e instanceof KernelCommandError)) throw e;
      // -C fails when the rule is absent; anything worse shows up when adding it below.
    }
    const where = r.position === 'first' ? ['-I', r.chain, '1'] : ['-A', r.chain];
    await this.iptables(r.table, [...where, ...r.spec], family);
  }

  private iptables(table: Table, args: string[], family: Family = 4): Promise<string> {
    // -w: wait for the xtables lock instead of failing while dockerd changes its own rules.
    return this.run(family === 4 ? 'iptables' : 'ip6tables', ['-w', '5', '-t', table, ...args]);
  }

  private run(file: string, args: string[], input?: string): Promise<string> {
    return this.cmd.run(file, args, input);
  }
}

const sameOwner = (owner: { bridge: string; hostVeth: string } | null, o: { bridge: string; hostVeth?: string }): boolean =>
  owner !== null && owner.bridge === o.bridge && (o.hostVeth === undefined || owner.hostVeth === o.hostVeth);

// What we read from `ip -j`; loose, since iproute2 versions add fields freely.
const IpLinks = z.array(
  z.looseObject({
    ifname: z.string(),
    ifalias: z.string().optional(),
    mtu: z.number().int(),
    address: z.string().optional(),
    master: z.string().optional(),
    flags: z.array(z.string()).default([]),
    linkinfo: z.looseObject({ info_kind: z.string().optional() }).optional(),
  }),
);
const IpRoutes = z.array(z.looseObject({ dev: z.string().optional() }));
