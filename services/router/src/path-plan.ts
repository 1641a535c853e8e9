import type { z } from 'zod';
import type { NetworkStatus } from '@weave/contracts';
import type { Peer } from './peers';
import { peerIdOf } from './peer-id';

export type LocalNetwork = Pick<z.output<typeof NetworkStatus>, 'networkId' | 'bridge' | 'wireId' | 'gatewayMac' | 'mtu' | 'subnets' | 'multicast'>;

export interface PlannedNetwork extends LocalNetwork {
  tap: string;
}

/** A network's kernel VXLAN port, and the peers it floods to. */
export interface PlannedVxlan {
  networkId: string;
  name: string;
  vni: number;
  bridge: string;
  mtu: number;
  /** Underlay addresses of the peers this network reaches over the kernel. */
  peers: string[];
  /** Multicast beyond the link crosses the device (the guard lets it through); else it stays here. */
  multicast: boolean;
}

export interface DataPathPlan {
  /** Every connected peer: the sleeve takes frames from any of them, whichever path they chose. */
  peers: Array<{ id: bigint; address: string; mtu?: number }>;
  networks: Array<{ id: number; tap: string; localMacs: string[]; sendTo?: bigint[]; multicast: boolean }>;
  /** What each TAP must be plugged into. */
  taps: PlannedNetwork[];
  vxlans: PlannedVxlan[];
}

/** The TAP of a network: named by its wire id, so it is the same on every host and never clashes. */
export const tapName = (wireId: number): string => `wvs${hex8(wireId)}`;
/** The VXLAN device of a network, named like its TAP. */
export const vxlanName = (wireId: number): string => `wvx${hex8(wireId)}`;
const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

/**
 * The 24-bit VXLAN id of a network, or null when it has none and stays on the sleeve. The wire
 * id is the base of the first IPv4 pool; for pools of /24 or wider its upper 24 bits are unique
 * as well (IPAM refuses overlapping pools), so every host derives the same VNI with nothing to
 * allocate. A narrower pool could share them with a neighbour, so it gets none.
 */
export function vniOf(n: Pick<LocalNetwork, 'wireId' | 'subnets'>): number | null {
  const first = n.subnets.find((s) => !s.includes(':'));
  const prefix = first ? Number(first.split('/')[1]) : NaN;
  return prefix <= 24 ? n.wireId >>> 8 : null;
}

/**
 * What the data path must carry, from the networks this host's netwire has, the peers that are
 * connected, and which of them the kernel's VXLAN reaches now (`fast`, by host). Pure, so the
 * mapping is a table test. Every connected peer gets every network: the catalogue puts each weave
 * network on every host, and a peer without one drops its frames and counts them. A network with
 * a VNI reaches its fast peers over its VXLAN device and only the others over the sleeve; one
 * without reaches everyone over the sleeve. The gateway's MAC stays local: every host's bridge
 * answers for it. A network in `failing` (its VXLAN device could not be set up) is carried by the
 * sleeve to every peer until it can, and its device floods to no one meanwhile. Multicast beyond
 * the link crosses either path only for networks that ask for it (`-o weave.multicast=true`).
 */
export function planDataPath(
  networks: readonly LocalNetwork[],
  peers: readonly Peer[],
  fast: ReadonlySet<string> = new Set(),
  failing: ReadonlySet<string> = new Set(),
  /** The largest IP packet the sleeve may carry to each peer (by host), where known. */
  mtus: ReadonlyMap<string, number> = new Map(),
): DataPathPlan {
  const byWire = new Map<number, LocalNetwork>();
  for (const n of [...networks].sort((a, b) => a.networkId.localeCompare(b.networkId))) {
    // Two Docker networks with one wire id would mean overlapping pools, which IPAM refuses;
    // the first keeps the TAP rather than flapping between them.
    if (!byWire.has(n.wireId)) byWire.set(n.wireId, n);
  }
  const connected = peers.filter((p) => p.state === 'connected').sort((a, b) => a.host.localeCompare(b.host));
  const fastPeers = connected.filter((p) => fast.has(p.host));
  const sleevePeers = connected.filter((p) => !fast.has(p.host)).map((p) => peerIdOf(p.host));
  const taps = [...byWire.values()].sort((a, b) => a.wireId - b.wireId).map((n) => ({ ...n, tap: tapName(n.wireId) }));
  const vxlans = taps.flatMap((t): PlannedVxlan[] => {
    const vni = vniOf(t);
    const to = failing.has(t.networkId) ? [] : fastPeers.map((p) => p.address);
    return vni === null ? [] : [{ networkId: t.networkId, name: vxlanName(t.wireId), vni, bridge: t.bridge, mtu: t.mtu, peers: to, multicast: t.multicast === true }];
  });
  return {
    peers: connected.map((p) => {
      // Outside what the sleeve takes (a route MTU below 640), leave the peer without a limit.
      const mtu = [mtus.get(p.host)].find((m) => m !== undefined && m >= 576 && m <= 65_535);
      return { id: peerIdOf(p.host), address: `${p.address.includes(':') ? `[${p.address}]` : p.address}:${p.port}`, ...(mtu === undefined ? {} : { mtu }) };
    }),
    networks: taps.map((t) => ({
      id: t.wireId,
      tap: t.tap,
      localMacs: [t.gatewayMac],
      multicast: t.multicast === true,
      ...(vniOf(t) !== null && fastPeers.length > 0 && !failing.has(t.networkId) ? { sendTo: sleevePeers } : {}),
    })),
    taps,
    vxlans,
  };
}
