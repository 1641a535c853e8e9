import { bridgeRules, Rule } from './firewall';
import { BridgeFirewall, Kernel, KernelCommandError, LinkInfo } from './kernel';
import { EndpointPorts, HeldPort, PortRange, portRules, servesLoopback } from './ports';

interface FakeLink extends LinkInfo {
  peer: string | null;
  addresses: string[];
  /** False once "Docker" moved it into a container: then it is not listed, but its pair holds. */
  inHostNs: boolean;
}

type Op =
  | 'createBridge'
  | 'createVethPair'
  | 'setMaster'
  | 'setUp'
  | 'isolateLink'
  | 'addAddress'
  | 'deleteLink'
  | 'ensureFirewallChains'
  | 'ensureFirewall'
  | 'removeFirewall'
  | 'ensurePortRules'
  | 'removePortRules';

/**
 * The kernel in memory, with the rules that matter to netwire (names are unique, a veth dies
 * with its peer, a bridge's ports are released when it goes, firewall rules need the chains),
 * a log of the changes made, and failure injection for the rollback tests.
 */
export class FakeKernel implements Kernel {
  readonly links = new Map<string, FakeLink>();
  readonly firewall = new Map<string, BridgeFirewall>();
  /** Published ports by host veth, whether or not the veth still exists (as rules outlive links). */
  readonly ports = new Map<string, EndpointPorts>();
  /** Ports held by somebody else on the host (Docker, a listening process). */
  foreignPorts: HeldPort[] = [];
  ephemeral: PortRange = { first: 49153, last: 65535 };
  /** Veths with hairpin on, and bridges that route 127.0.0.0/8. */
  readonly hairpin = new Set<string>();
  readonly routeLocalnet = new Set<string>();
  chains = false;
  underlay: number | null = 1500;
  /** Every state-changing call, as "op name", in order. */
  readonly calls: string[] = [];
  private failures: Array<(op: Op, name: string, index: number) => boolean> = [];
  /** Optional delay per call, to let concurrent operations interleave in tests. */
  delayMs = 0;

  /** Makes the `index`-th state-changing call from now on fail (0 = the next one). */
  failAt(index: number): void {
    const target = this.calls.length + index;
    this.failures.push((_op, _name, i) => i === target);
  }

  /** Makes the next call of `op` (on `name`, if given) fail. */
  failOn(op: Op, name?: string): void {
    let armed = true;
    this.failures.push((o, n) => {
      if (!armed || o !== op || (name !== undefined && n !== name)) return false;
      armed = false;
      return true;
    });
  }

  /** What Docker does at Join: the container end leaves the host namespace. */
  moveToContainer(name: string): void {
    this.need(name).inHostNs = false;
  }
  moveToHost(name: string): void {
    const l = this.links.get(name);
    if (!l) throw new Error(`fake kernel: no link ${name}`);
    l.inHostNs = true;
  }
  /** A container namespace destroyed with the veth end still inside. */
  destroyContainerEnd(name: string): void {
    this.drop(name);
  }
  addresses(name: string): string[] {
    return [...this.need(name).addresses];
  }
  /** The rules that would be in iptables now, as `table chain spec…` lines, for assertions. */
  ruleLines(): string[] {
    return [...[...this.firewall.values()].flatMap(bridgeRules), ...[...this.ports.values()].flatMap(portRules)].map((r: Rule) => [r.table, r.chain, ...r.spec].join(' '));
  }

  async linkExists(name: string): Promise<boolean> {
    return this.links.get(name)?.inHostNs === true;
  }

  async listLinks(): Promise<LinkInfo[]> {
    await this.pause();
    return [...this.links.values()]
      .filter((l) => l.inHostNs)
      .map(({ name, kind, master, mtu, mac, up, owner }) => ({ name, kind, master, mtu, mac, up, owner }));
  }

  async underlayMtu(): Promise<number | null> {
    return this.underlay;
  }

  /** Route MTUs by destination; an address not listed has the underlay's. */
  readonly routes = new Map<string, number>();

  async routeMtu(address: string): Promise<number | null> {
    return this.routes.get(address) ?? this.underlay;
  }

  async createBridge(name: string, o: { mtu: number; mac: string; owner: string }): Promise<void> {
    await this.change('createBridge', name);
    this.free(name);
    this.links.set(name, this.link(name, 'bridge', o.mtu, o.mac, null, o.owner));
  }

  async createVethPair(name: string, peer: string, o: { mtu: number; peerMac: string; owner: string; master: string }): Promise<void> {
    await this.change('createVethPair', name);
    this.free(name);
    this.free(peer);
    this.links.set(name, this.link(name, 'veth', o.mtu, `02:00:00:00:00:${(this.links.size & 0xff).toString(16).padStart(2, '0')}`, peer, o.owner));
    this.links.set(peer, this.link(peer, 'veth', o.mtu, o.peerMac, name, o.owner));
    const host = this.links.get(name)!;
    if (this.links.get(o.master)?.kind !== 'bridge') {
      this.drop(name);
      this.fail(`ip link add name ${name} master ${o.master}`, 'master is not a bridge');
    }
    host.master = o.master;
    host.up = true;
  }

  async setMaster(name: string, master: string): Promise<void> {
    await this.change('setMaster', name);
    const l = this.need(name);
    if (this.need(master).kind !== 'bridge') this.fail(`ip link set dev ${name} master ${master}`, 'not a bridge');
    l.master = master;
  }

  async setUp(name: string): Promise<void> {
    await this.change('setUp', name);
    this.need(name).up = true;
  }

  async isolateLink(name: string): Promise<void> {
    await this.change('isolateLink', name);
    const l = this.need(name);
    l.up = false;
    l.master = null;
  }

  async addAddress(name: string, address: string): Promise<void> {
    await this.change('addAddress', name);
    const l = this.need(name);
    if (!l.addresses.includes(address)) l.addresses.push(address);
  }

  async deleteLink(name: string): Promise<boolean> {
    await this.change('deleteLink', name);
    const l = this.links.get(name);
    if (!l || !l.inHostNs) return false;
    this.drop(name);
    return true;
  }

  async ensureFirewallChains(): Promise<void> {
    await this.change('ensureFirewallChains', '');
    this.chains = true;
  }

  async ensureFirewall(f: BridgeFirewall): Promise<void> {
    await this.change('ensureFirewall', f.bridge);
    if (!this.chains) this.fail(`iptables -A WEAVE-FORWARD …`, "Chain 'WEAVE-FORWARD' does not exist");
    this.firewall.set(f.bridge, { ...f, masquerade: [...f.masquerade] });
  }

  async removeFirewall(bridge: string): Promise<void> {
    await this.change('removeFirewall', bridge);
    this.firewall.delete(bridge);
  }

  async firewallBridges(): Promise<string[]> {
    return [...this.firewall.keys()];
  }

  async ensurePortRules(e: EndpointPorts): Promise<void> {
    await this.change('ensurePortRules', e.hostVeth);
    if (!this.chains) this.fail(`iptables -A WEAVE-PORTS …`, "Chain 'WEAVE-PORTS' does not exist");
    if (e.ports.length === 0) return void this.ports.delete(e.hostVeth);
    this.need(e.hostVeth);
    this.hairpin.add(e.hostVeth);
    if (e.ports.some(servesLoopback)) this.routeLocalnet.add(e.bridge);
    this.ports.set(e.hostVeth, structuredClone(e));
  }

  async removePortRules(o: { bridge: string; hostVeth?: string }): Promise<void> {
    await this.change('removePortRules', o.hostVeth ?? o.bridge);
    for (const [veth, e] of this.ports) if (e.bridge === o.bridge && (o.hostVeth === undefined || veth === o.hostVeth)) this.ports.delete(veth);
  }

  async portRuleOwners(): Promise<Array<{ bridge: string; hostVeth: string }>> {
    return [...this.ports.values()].map(({ bridge, hostVeth }) => ({ bridge, hostVeth }));
  }

  async portsInUse(): Promise<HeldPort[]> {
    await this.pause();
    const ours = [...this.ports.values()].flatMap((e) =>
      e.ports.map((p): HeldPort => ({ protocol: p.protocol, hostIp: p.hostIp, hostPort: p.hostPort, hostVeth: e.hostVeth, by: `published by weave for endpoint ${e.hostVeth} (to ${p.containerIp}:${p.containerPort})` })),
    );
    return [...ours, ...this.foreignPorts];
  }

  async ephemeralPorts(): Promise<PortRange> {
    return this.ephemeral;
  }

  private link(name: string, kind: string, mtu: number, mac: string, peer: string | null, owner: string | null = null): FakeLink {
    return { name, kind, master: null, mtu, mac, up: false, peer, addresses: [], inHostNs: true, owner };
  }

  private drop(name: string): void {
    const l = this.links.get(name);
    if (!l) return;
    this.links.delete(name);
    if (l.peer) this.links.delete(l.peer);
    for (const other of this.links.values()) if (other.master === name) other.master = null;
  }

  private free(name: string): void {
    if (this.links.has(name)) this.fail(`ip link add name ${name} …`, 'RTNETLINK answers: File exists');
  }

  private need(name: string): FakeLink {
    const l = this.links.get(name);
    if (!l || !l.inHostNs) this.fail(`ip link … dev ${name}`, `Cannot find device "${name}"`);
    return l!;
  }

  private fail(command: string, stderr: string): never {
    throw new KernelCommandError(command, stderr, 2);
  }

  private async change(op: Op, name: string): Promise<void> {
    await this.pause();
    const index = this.calls.length;
    this.calls.push(`${op} ${name}`.trim());
    if (this.failures.some((f) => f(op, name, index))) this.fail(`${op} ${name}`, 'injected failure');
  }

  private async pause(): Promise<void> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
  }
}
