import type { z } from 'zod';
import type { NetworkStatus } from '@weave/contracts';
import type { Peer } from './peers';
import { peerIdOf } from './peer-id';

export type LocalNetwork = Pick<z.output<typeof NetworkStatus>, 'networkId' | 'bridge' | 'wireId' | 'gatewayMac' | 'mtu'>;

export interface PlannedNetwork extends LocalNetwork {
  tap: string;
}

export interface SleevePlan {
  peers: Array<{ id: bigint; address: string }>;
  networks: Array<{ id: number; tap: string; localMacs: string[] }>;
  /** What each TAP must be plugged into. */
  taps: PlannedNetwork[];
}

/** The TAP of a network: named by its wire id, so it is the same on every host and never clashes. */
export const tapName = (wireId: number): string => `wvs${wireId.toString(16).padStart(8, '0')}`;

/**
 * What the sleeve must carry, from the networks this host's netwire has and the peers that are
 * connected. Pure, so the mapping is a table test. Every connected peer gets every network: the
 * catalogue puts each weave network on every host, and a peer without one drops its frames and
 * counts them. The gateway's MAC stays local: every host's bridge answers for it.
 */
export function planSleeve(networks: readonly LocalNetwork[], peers: readonly Peer[]): SleevePlan {
  const byWire = new Map<number, LocalNetwork>();
  for (const n of [...networks].sort((a, b) => a.networkId.localeCompare(b.networkId))) {
    // Two Docker networks with one wire id would mean overlapping pools, which IPAM refuses;
    // the first keeps the TAP rather than flapping between them.
    if (!byWire.has(n.wireId)) byWire.set(n.wireId, n);
  }
  const taps = [...byWire.values()].sort((a, b) => a.wireId - b.wireId).map((n) => ({ ...n, tap: tapName(n.wireId) }));
  return {
    peers: peers
      .filter((p) => p.state === 'connected')
      .sort((a, b) => a.host.localeCompare(b.host))
      .map((p) => ({ id: peerIdOf(p.host), address: `${p.address.includes(':') ? `[${p.address}]` : p.address}:${p.port}` })),
    networks: taps.map((t) => ({ id: t.wireId, tap: t.tap, localMacs: [t.gatewayMac] })),
    taps,
  };
}
