import { UnavailableError } from '@weave/errors';
import type { EndpointPorts, HeldPort, PortRange } from './ports';

/**
 * Everything netwire asks of the host kernel, and nothing more. The service logic is written
 * against this interface only; `LinuxKernel` implements it with iproute2 and iptables, and
 * `FakeKernel` in memory (with failure injection) for tests that need no root.
 */
export interface Kernel {
  /** Every link in the namespace netwire manages. */
  listLinks(): Promise<LinkInfo[]>;
  /** The MTU of the interface holding the default IPv4 route; null when there is none. */
  underlayMtu(): Promise<number | null>;
  /** The MTU of the route to `address` (its own, or its interface's); null when there is none. */
  routeMtu(address: string): Promise<number | null>;

  /** `owner` tags the link as this host's (its alias), so reconcile never takes another stack's links. */
  createBridge(name: string, o: { mtu: number; mac: string; owner: string }): Promise<void>;
  /**
   * A veth pair, its `name` end up on bridge `master`; `peer` is the end Docker moves into the
   * container. One step, because it is on the path of every container start.
   */
  createVethPair(name: string, peer: string, o: { mtu: number; peerMac: string; owner: string; master: string }): Promise<void>;
  /** Whether a link of that name exists; cheaper than listing every link. */
  linkExists(name: string): Promise<boolean>;
  setMaster(name: string, master: string): Promise<void>;
  setUp(name: string): Promise<void>;
  /** Takes a link down and off its bridge, in one step; the link itself stays. */
  isolateLink(name: string): Promise<void>;
  /** Adds `address` (CIDR form, v4 or v6) to the link; adding one that is there is not an error. */
  addAddress(name: string, address: string): Promise<void>;
  /** Deletes a link (a veth takes its peer with it). False when there was no such link. */
  deleteLink(name: string): Promise<boolean>;

  /** Our own chains and the jumps into them; safe to call at any time. */
  ensureFirewallChains(): Promise<void>;
  /** Makes the rules tagged for `f.bridge` exactly those `f` asks for. */
  ensureFirewall(f: BridgeFirewall): Promise<void>;
  /** Removes every rule tagged for `bridge`; none there is not an error. */
  removeFirewall(bridge: string): Promise<void>;
  /** The bridges that have tagged rules, whether or not the bridge itself still exists. */
  firewallBridges(): Promise<string[]>;

  /**
   * Makes one endpoint's published-port rules exactly `e.ports` (none: all removed), with what
   * they need of the links: hairpin on its veth, and 127.0.0.0/8 routed by its bridge when a
   * port answers on loopback.
   */
  ensurePortRules(e: EndpointPorts): Promise<void>;
  /** Removes the published-port rules of one endpoint of `bridge`, or of all its endpoints. */
  removePortRules(o: { bridge: string; hostVeth?: string }): Promise<void>;
  /** The endpoints that have published-port rules, whether or not they still exist. */
  portRuleOwners(): Promise<Array<{ bridge: string; hostVeth: string }>>;
  /** The host ports somebody holds: weave's and Docker's published ports, listening sockets. */
  portsInUse(): Promise<HeldPort[]>;
  /** The host's ephemeral port range, where a request for any port picks one. */
  ephemeralPorts(): Promise<PortRange>;
}

export interface LinkInfo {
  name: string;
  /** `bridge`, `veth`, … ; null for a link without a kind (a physical NIC, lo). */
  kind: string | null;
  master: string | null;
  mtu: number;
  mac: string;
  up: boolean;
  /** The weave host that made the link (from its alias `weave:<host>`); null for anyone else's. */
  owner: string | null;
}

export const ownerAlias = (owner: string): string => `weave:${owner}`;

/** What the firewall must do for one network's bridge. */
export interface BridgeFirewall {
  bridge: string;
  internal: boolean;
  /** IPv4 subnets to masquerade when they leave through another interface; empty if internal. */
  masquerade: string[];
  /** Queries to these resolvers (what Docker gave the containers) go to weave DNS on `gateway`; absent: none. */
  dns?: { gateway: string; intercepted: string[] } | null;
}

/** A kernel command that failed; the message says what was run and what the kernel said. */
export { KernelCommandError } from '@weave/kernel-cmd';
