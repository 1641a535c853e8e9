import { countEach, type Family, type Labels, type Registry, type Sample } from '@weave/metrics';
import type { PeerTraffic } from '@weave/contracts';
import type { RunningRouter } from './service';

/** camelCase to snake_case: `dropUnknownPeer` → `drop_unknown_peer`. */
const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

const HELP: Record<string, string> = {
  weave_router_tap_frames_total: "Frames between the data path and this host's bridges: in = read from a TAP (a super-frame counts once), out = written to one",
  weave_router_tap_superframes_total: 'TAP reads and writes that carried a super-frame (TSO/GRO) rather than one frame',
  weave_router_peer_frames_total: 'Frames sent to peer routers (out; a flood to n peers counts n) and received from them (in)',
  weave_router_datagrams_total: 'UDP datagrams sent (out) and received (in), from non-peers too',
  weave_router_bytes_total: 'UDP payload bytes sent (out) and received (in)',
  weave_router_floods_total: 'Frames flooded to every peer (broadcast, multicast, unknown destination), once per frame',
  weave_router_io_errors_total: 'Failed TAP and UDP reads and writes, by operation',
  weave_router_drops_total: 'Frames and datagrams dropped, by reason (malformed_*: datagrams that are not well-formed sleeve datagrams)',
};

/** The sleeve's in/out counter pairs, by the name before In/Out. */
const DIRECTED: Record<string, string> = { tapFrames: 'tap_frames', tapSuperFrames: 'tap_superframes', datagrams: 'datagrams', bytes: 'bytes' };

/** Where one of the sleeve's counters goes: its family and labels (besides `path`). */
function placeOf(counter: string): { name: string; labels: Labels } {
  const directed = /^(\w+?)(In|Out)$/.exec(counter);
  const family = directed && DIRECTED[directed[1]!];
  if (family) return { name: `weave_router_${family}_total`, labels: { direction: directed[2]!.toLowerCase() } };
  if (counter === 'framesToPeers' || counter === 'framesFromPeers') return { name: 'weave_router_peer_frames_total', labels: { direction: counter === 'framesToPeers' ? 'out' : 'in' } };
  if (counter === 'floods') return { name: 'weave_router_floods_total', labels: {} };
  const io = /^(tapRead|tapWrite|udpSend|udpRecv)Errors$/.exec(counter);
  if (io) return { name: 'weave_router_io_errors_total', labels: { op: snake(io[1]!) } };
  const drop = /^drop([A-Z]\w*)$/.exec(counter);
  if (drop) return { name: 'weave_router_drops_total', labels: { reason: snake(drop[1]!).slice(1) } };
  if (/^malformed[A-Z]/.test(counter)) return { name: 'weave_router_drops_total', labels: { reason: snake(counter) } };
  // A counter added to the sleeve later still shows, under its own name.
  return { name: `weave_router_sleeve_${snake(counter)}_total`, labels: {} };
}

/** The sleeve's counters (decimal strings, as status has them) as counter families, labelled `path="sleeve"`. */
export function sleeveFamilies(counters: Readonly<Record<string, string>>): Family[] {
  const families = new Map<string, Sample[]>();
  for (const [counter, value] of Object.entries(counters)) {
    const { name, labels } = placeOf(counter);
    const samples = families.get(name) ?? families.set(name, []).get(name)!;
    samples.push({ labels: { path: 'sleeve', ...labels }, value: BigInt(value) });
  }
  return [...families].map(([name, samples]) => ({ name, help: HELP[name] ?? `The sleeve's ${name.slice('weave_router_sleeve_'.length, -'_total'.length)} counter`, type: 'counter', samples }));
}

/**
 * What the sleeve carried to and from each peer (`path="sleeve"`: the kernel's VXLAN counts per
 * device, not per peer).
 */
export function peerTrafficFamilies(traffic: ReadonlyArray<readonly [string, PeerTraffic]>): Family[] {
  const samples = (to: keyof PeerTraffic, from: keyof PeerTraffic): Sample[] =>
    traffic.flatMap(([peer, t]) => [
      { labels: { peer, path: 'sleeve', direction: 'out' }, value: BigInt(t[to]) },
      { labels: { peer, path: 'sleeve', direction: 'in' }, value: BigInt(t[from]) },
    ]);
  return [
    { name: 'weave_router_peer_traffic_frames_total', help: 'Per peer: frames the sleeve sent to it (out; each copy of a flood) and received from it (in)', type: 'counter', samples: samples('framesTo', 'framesFrom') },
    { name: 'weave_router_peer_traffic_bytes_total', help: 'Per peer: UDP payload bytes the sleeve sent to it (out) and received from it (in), handshakes and keepalives included', type: 'counter', samples: samples('bytesTo', 'bytesFrom') },
  ];
}

/**
 * The router's state at each scrape, from what its status shows: the data path's counters, the
 * peers (connected or lost, each with its path and MTU), and the networks on the data path.
 */
export function collectRouterState(registry: Registry, router: Pick<RunningRouter, 'peers' | 'dataPath'>): void {
  registry.collect((): Family[] => {
    const status = router.dataPath.status();
    const peers = router.peers.list().map((p) => ({ ...p, ...router.dataPath.pathOf(p.host) }));
    const traffic = [...router.dataPath.trafficByHost(peers.map((p) => p.host))];
    const vxlans = status.networks.flatMap((n) => (n.vxlan ? [n.vxlan] : []));
    return [
      ...sleeveFamilies(status.sleeve),
      { name: 'weave_router_peers', help: 'Peers this router knows, by state (connected, lost)', type: 'gauge', samples: countEach('state', ['connected', 'lost'], peers, (p) => p.state) },
      {
        name: 'weave_router_peer_up',
        help: 'Per peer: 1 while connected, 0 once lost; path is the data path its traffic takes (none until chosen)',
        type: 'gauge',
        samples: peers.map((p) => ({ labels: { peer: p.host, path: p.path ?? 'none' }, value: p.state === 'connected' ? 1 : 0 })),
      },
      ...peerTrafficFamilies(traffic),
      {
        name: 'weave_router_peer_mtu_bytes',
        help: 'Per peer: the MTU a frame can have on its data path',
        type: 'gauge',
        samples: peers.flatMap((p) => (p.mtu === null ? [] : [{ labels: { peer: p.host, path: p.path ?? 'none' }, value: p.mtu }])),
      },
      {
        name: 'weave_router_peer_last_seen_timestamp_seconds',
        help: 'Per peer: when its last presence announcement arrived (Unix time)',
        type: 'gauge',
        samples: peers.map((p) => ({ labels: { peer: p.host }, value: p.lastSeen / 1000 })),
      },
      { name: 'weave_router_networks', help: 'Weave networks on the data path, by whether their TAP is on the bridge (attached)', type: 'gauge', samples: countEach('attached', ['true', 'false'], status.networks, (n) => String(n.attached)) },
      { name: 'weave_router_vxlan_devices', help: "Networks' kernel VXLAN devices (the fast path), by state (up, down)", type: 'gauge', samples: countEach('state', ['up', 'down'], vxlans, (v) => (v.up ? 'up' : 'down')) },
    ];
  });
}
