import type { LinkInfo } from './kernel';
import { roleOf } from './names';
import type { EndpointRecord, NetworkRecord } from './store';

/**
 * What reconcile must do, decided from what the kernel has and what we recorded; no I/O, so
 * every decision is a table test. Only links named like ours and of the right kind are ever
 * touched: a host's own interfaces are never candidates.
 */
export interface ReconcileInput {
  /** This host: only links it made (tagged with its name) are ever candidates for removal. */
  owner: string;
  links: LinkInfo[];
  networks: NetworkRecord[];
  endpoints: EndpointRecord[];
  firewallBridges: string[];
}

export interface ReconcilePlan {
  /** Leftover links: veths first (their bridges may be leftovers too), then bridges. */
  removeLinks: string[];
  /** Bridges whose tagged rules belong to no recorded network. */
  removeFirewall: string[];
  /** Recorded networks whose bridge is gone: bridge, addresses and rules are made again. */
  restoreNetworks: NetworkRecord[];
  /** Recorded networks whose bridge is there: their rules are ensured (someone may have flushed them). */
  ensureNetworks: NetworkRecord[];
  /** Host veths of recorded endpoints that are no longer on their network's bridge. */
  reattach: Array<{ hostVeth: string; bridge: string; endpointId: string }>;
  /** Endpoint records whose veth and network are both gone: nothing can use them again. */
  forgetEndpoints: string[];
}

export function planReconcile(i: ReconcileInput): ReconcilePlan {
  const networks = new Map(i.networks.map((n) => [n.spec.networkId, n]));
  const knownBridges = new Set(i.networks.map((n) => n.bridge));
  const knownVeths = new Set(i.endpoints.flatMap((e) => [e.hostVeth, e.containerVeth]));
  const links = new Map(i.links.map((l) => [l.name, l]));
  const bridgePresent = (name: string): boolean => links.get(name)?.kind === 'bridge';

  const orphanVeths: string[] = [];
  const orphanBridges: string[] = [];
  for (const l of i.links) {
    // Another weave stack on this machine (a test run beside an installed one, a simulated
    // host) has links named like ours; they are not leftovers of ours.
    if (l.owner !== i.owner) continue;
    const role = roleOf(l.name);
    if (role === 'bridge' && l.kind === 'bridge' && !knownBridges.has(l.name)) orphanBridges.push(l.name);
    if ((role === 'hostVeth' || role === 'containerVeth') && l.kind === 'veth' && !knownVeths.has(l.name)) orphanVeths.push(l.name);
  }

  const reattach: ReconcilePlan['reattach'] = [];
  const forgetEndpoints: string[] = [];
  for (const e of i.endpoints) {
    const net = networks.get(e.networkId);
    const veth = links.get(e.hostVeth);
    if (!veth && !net) forgetEndpoints.push(e.endpointId);
    // An isolated endpoint stays off its bridge (see isolate.ts): its address is another host's.
    if (veth && net && !e.isolated && veth.master !== net.bridge) reattach.push({ hostVeth: e.hostVeth, bridge: net.bridge, endpointId: e.endpointId });
  }

  return {
    removeLinks: [...orphanVeths, ...orphanBridges],
    removeFirewall: [...new Set(i.firewallBridges)].filter((b) => !knownBridges.has(b) && (links.get(b)?.owner ?? i.owner) === i.owner),
    restoreNetworks: i.networks.filter((n) => !bridgePresent(n.bridge)),
    ensureNetworks: i.networks.filter((n) => bridgePresent(n.bridge)),
    reattach,
    forgetEndpoints,
  };
}
