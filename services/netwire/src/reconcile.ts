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
  /** The endpoints that have published-port rules in the kernel. */
  portOwners: Array<{ bridge: string; hostVeth: string }>;
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
  /** Published-port rules of endpoints that have none recorded (gone, or revoked while we were down). */
  removePorts: Array<{ bridge: string; hostVeth: string }>;
  /** Recorded endpoints with published ports and their veth, whose rules are ensured (a flush took them, say). */
  restorePorts: Array<{ endpoint: EndpointRecord; bridge: string }>;
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

  const ours = (bridge: string): boolean => (links.get(bridge)?.owner ?? i.owner) === i.owner;
  // Only where the veth is there to carry them: an endpoint without one gets its rules back when
  // Docker publishes again after starting its container.
  const restorePorts = i.endpoints.flatMap((e) => {
    const net = networks.get(e.networkId);
    return net && e.ports?.length && links.has(e.hostVeth) ? [{ endpoint: e, bridge: net.bridge }] : [];
  });
  const published = new Set(restorePorts.map((r) => `${r.bridge}/${r.endpoint.hostVeth}`));
  return {
    removeLinks: [...orphanVeths, ...orphanBridges],
    removeFirewall: [...new Set(i.firewallBridges)].filter((b) => !knownBridges.has(b) && ours(b)),
    removePorts: i.portOwners.filter((o) => !published.has(`${o.bridge}/${o.hostVeth}`) && ours(o.bridge)),
    restorePorts,
    restoreNetworks: i.networks.filter((n) => !bridgePresent(n.bridge)),
    ensureNetworks: i.networks.filter((n) => bridgePresent(n.bridge)),
    reattach,
    forgetEndpoints,
  };
}
