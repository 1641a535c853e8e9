import type { Presence } from '@weave/contracts';

export interface Peer {
  host: string;
  boot: string;
  address: string;
  port: number;
  state: 'connected' | 'lost';
  /** Milliseconds on the injected clock. */
  lastSeen: number;
  since: number;
}

export type PeerChange =
  | { kind: 'connected'; peer: Peer }
  | { kind: 'disconnected'; host: string; reason: 'left' | 'timeout' | 'restarted' };

/**
 * Who is in the mesh, from presence messages and the passing of time; no I/O and no clock of its
 * own, so liveness is a table test. A peer is lost when it says it is leaving, or when nothing
 * was heard from it for `timeoutMs`; a new boot id means it restarted and is connected afresh.
 */
export class PeerTable {
  private readonly peers = new Map<string, Peer>();

  constructor(
    private readonly self: string,
    private readonly timeoutMs: number,
  ) {}

  heard(p: Presence, now: number): PeerChange[] {
    if (p.host === this.self) return [];
    const known = this.peers.get(p.host);
    if (p.leaving) {
      if (!known || known.state === 'lost' || known.boot !== p.boot) return [];
      known.state = 'lost';
      known.since = now;
      return [{ kind: 'disconnected', host: p.host, reason: 'left' }];
    }
    if (known && known.state === 'connected' && known.boot === p.boot) {
      Object.assign(known, { lastSeen: now, address: p.address, port: p.port });
      return [];
    }
    const changes: PeerChange[] = known?.state === 'connected' ? [{ kind: 'disconnected', host: p.host, reason: 'restarted' }] : [];
    const peer: Peer = { host: p.host, boot: p.boot, address: p.address, port: p.port, state: 'connected', lastSeen: now, since: now };
    this.peers.set(p.host, peer);
    return [...changes, { kind: 'connected', peer: { ...peer } }];
  }

  tick(now: number): PeerChange[] {
    const changes: PeerChange[] = [];
    for (const p of this.peers.values()) {
      if (p.state === 'connected' && now - p.lastSeen > this.timeoutMs) {
        p.state = 'lost';
        p.since = now;
        changes.push({ kind: 'disconnected', host: p.host, reason: 'timeout' });
      }
    }
    return changes;
  }

  list(): Peer[] {
    return [...this.peers.values()].map((p) => ({ ...p })).sort((a, b) => a.host.localeCompare(b.host));
  }
}
