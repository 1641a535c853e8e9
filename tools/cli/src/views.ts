import type { ResOf } from '@weave/contracts';
import type { ipamRpc, netwireRpc, routerRpc } from '@weave/contracts';
import type { pluginApiRpc } from '@weave/contracts';
import { formatPublishedPort } from '@weave/contracts';
import { table } from './format';

export type IpamStatus = ResOf<typeof ipamRpc, 'status'>;
export type NetwireStatus = ResOf<typeof netwireRpc, 'status'>;
export type RouterStatus = ResOf<typeof routerRpc, 'status'>;
export type PluginApiStatus = ResOf<typeof pluginApiRpc, 'status'>;
export type IpamHost = IpamStatus['hosts'][number];
export type RmpeerResult = ResOf<typeof ipamRpc, 'rmpeer'>;

/** What one host says about itself; any part may be missing when that service did not answer. */
export interface HostReport {
  host: string;
  ipam: IpamStatus | null;
  netwire: NetwireStatus | null;
  router: RouterStatus | null;
  /** Containers plugin-api is moving off addresses other hosts hold; absent from a plugin-api without them. */
  pluginApi?: PluginApiStatus | null;
  /** Why a part is missing, for the reader. */
  problems: string[];
}

/** "4s ago", "3m ago": how long since `iso`, as a person reads it at a glance. */
export function ago(iso: string, now: Date): string {
  return `${span(now.getTime() - Date.parse(iso))} ago`;
}

/** "40s", "3m", "2h": a duration at a glance. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/** `weave peers`: every peer this router knows, with the path its traffic takes. */
export function peersView(r: RouterStatus, now: Date): string {
  return table(
    ['PEER', 'ADDRESS', 'STATE', 'PATH', 'MTU', 'ENCRYPTION', 'LAST HEARD', 'SINCE', 'WHY THIS PATH'],
    r.peers.map((p) => [p.host, `${p.address}:${p.port}`, p.state, p.path ?? '-', p.mtu === null ? '-' : String(p.mtu), p.encryption ?? '-', ago(p.lastSeen, now), ago(p.since, now), p.pathReason ?? '-']),
  );
}

/** `weave networks`: each weave network once, with its endpoints on every host that answered. */
export function networksView(reports: readonly HostReport[]): string {
  const byWire = new Map<number, { subnets: string; mtu: Set<number>; perHost: Map<string, number> }>();
  for (const r of reports) {
    for (const n of r.netwire?.networks ?? []) {
      const e = byWire.get(n.wireId) ?? { subnets: n.subnets.join(','), mtu: new Set<number>(), perHost: new Map<string, number>() };
      e.mtu.add(n.mtu);
      e.perHost.set(r.host, n.endpoints);
      byWire.set(n.wireId, e);
    }
  }
  const rows = [...byWire.entries()]
    .sort(([a], [b]) => a - b)
    .map(([wireId, e]) => [
      e.subnets,
      hex(wireId),
      [...e.mtu].sort().join(','),
      [...e.perHost.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([h, c]) => `${h}:${c}`).join(' '),
    ]);
  return table(['SUBNETS', 'WIRE ID', 'MTU', 'ENDPOINTS PER HOST'], rows);
}

/**
 * `weave ps`: every weave endpoint on every host that answered, with its addresses and the ports
 * published to it (which `docker port` cannot show for a plugin's network).
 */
export function psView(reports: readonly HostReport[]): string {
  const rows = reports.flatMap((r) => {
    const subnets = new Map((r.netwire?.networks ?? []).map((n) => [n.networkId, n.subnets.join(',')]));
    return (r.netwire?.endpoints ?? []).map((e) => [
      r.host,
      e.endpointId.slice(0, 12),
      subnets.get(e.networkId) ?? e.networkId.slice(0, 12),
      [e.address, e.addressV6].filter(Boolean).join(' ') || '-',
      e.mac,
      e.present ? 'up' : 'veth missing',
      e.ports?.map(formatPublishedPort).join(', ') || '-',
    ]);
  });
  rows.sort((a, b) => a[0]!.localeCompare(b[0]!) || a[3]!.localeCompare(b[3]!, undefined, { numeric: true }));
  return table(['HOST', 'ENDPOINT', 'NETWORK', 'ADDRESS', 'MAC', 'STATE', 'PORTS'], rows);
}

/** `weave status`: one host's peers, data path, networks and address pools, then its problems. */
export function statusView(r: HostReport, now: Date): string {
  const out: string[] = [`host ${r.host}${r.router ? ` (${r.router.address}:${r.router.port})` : ''}`];
  if (r.router) {
    out.push('', peersView(r.router, now));
    const c = r.router.sleeve;
    const drops = Object.entries(c).filter(([k, v]) => /^(drop|malformed)/.test(k) && v !== '0');
    out.push('', `sleeve: ${c.framesToPeers ?? '0'} frames to peers, ${c.framesFromPeers ?? '0'} from peers; dropped: ${drops.map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  }
  if (r.netwire) {
    const taps = new Map((r.router?.networks ?? []).map((n) => [n.networkId, n]));
    out.push(
      '',
      table(
        ['NETWORK', 'BRIDGE', 'SUBNETS', 'MTU', 'INTERNAL', 'ENDPOINTS', 'WIRE ID', 'SLEEVE TAP', 'VXLAN (VNI)'],
        r.netwire.networks.map((n) => {
          const t = taps.get(n.networkId);
          const vx = t?.vxlan ? `${t.vxlan.device} (${t.vxlan.vni})${t.vxlan.up ? '' : ' (not set up)'}` : '-';
          return [n.networkId.slice(0, 12), n.bridge, n.subnets.join(','), String(n.mtu), String(n.internal), String(n.endpoints), hex(n.wireId), t ? `${t.tap}${t.attached ? '' : ' (not attached)'}` : '-', vx];
        }),
      ),
    );
  }
  if (r.ipam) {
    out.push(
      '',
      table(
        ['POOL', 'RANGE', 'HOLDERS', 'BLOCKS (owner used/size)'],
        r.ipam.pools.map((p) => [
          p.pool,
          p.subPool ?? '-',
          Object.entries(p.holders).map(([h, n]) => `${h}:${n}`).join(','),
          p.blocks.map((b) => `${b.block} ${b.owner} ${b.used}/${b.size}`).join('; '),
        ]),
      ),
    );
  }
  if (r.ipam && r.ipam.hosts.length > 0) out.push('', ipamHostsView(r.ipam.hosts, now));
  out.push(...problemsOf(r, now).map((p, i) => `${i === 0 ? '\n' : ''}problem: ${p}`));
  return out.join('\n');
}

/** The ipam hosts of the mesh: each one's epoch, and its lease or who reclaimed it. */
export function ipamHostsView(hosts: readonly IpamHost[], now: Date): string {
  return table(
    ['IPAM HOST', 'EPOCH', 'STATE', 'LAST RENEWED', 'LEASE'],
    hosts.map((h) => [
      h.host,
      String(h.epoch),
      h.state === 'live' ? 'live' : `reclaimed by ${h.reclaimedBy} ${ago(h.reclaimedAt, now)}${h.done ? '' : ' (in progress)'}`,
      ago(h.renewedAt, now),
      h.state === 'live' ? (h.leaseLeftMs > 0 ? `${span(h.leaseLeftMs)} left` : `ran out ${span(-h.leaseLeftMs)} ago`) : '-',
    ]),
  );
}

/**
 * A host's ipam renews every 10 s by default: silent for three renewals it is worth saying, long
 * before its lease (5 min by default) runs out.
 */
const SILENT_MS = 30_000;

/** What the hosts' records say is wrong: a host gone quiet, one overdue or being reclaimed, this host reclaimed. */
function hostProblems(self: string, hosts: readonly IpamHost[], now: Date): string[] {
  return hosts.flatMap((h): string[] => {
    if (h.state === 'reclaimed') {
      if (h.host === self) return [`ipam of ${h.host} was reclaimed by ${h.reclaimedBy} ${ago(h.reclaimedAt, now)}: addresses of containers started before then may be in use elsewhere`];
      return h.done ? [] : [`${h.host} is being reclaimed by ${h.reclaimedBy} (since ${ago(h.reclaimedAt, now)})`];
    }
    const silent = now.getTime() - Date.parse(h.renewedAt);
    if (h.leaseLeftMs <= 0) return [`${h.host} unreachable for ${span(silent)}; its lease ran out ${span(-h.leaseLeftMs)} ago, its blocks are reclaimed on the next renewal of a live host`];
    if (silent < SILENT_MS) return [];
    return [`${h.host} unreachable for ${span(silent)}; its blocks will be reclaimed in ${span(h.leaseLeftMs)} (or now: weave rmpeer ${h.host})`];
  });
}

/** What `weave rmpeer` did. */
export function rmpeerView(r: RmpeerResult, now: Date): string {
  if (r.outcome === 'already') return `${r.host} was already reclaimed by ${r.by} ${ago(r.at, now)}; nothing to do`;
  const lines = [
    `reclaimed ${r.host} (epoch ${r.epoch}): ${r.blocks.length} block(s), ${r.addresses.length} address(es), ${r.pools.length} pool reference(s)`,
    ...r.blocks.map((b) => `  block ${b.block} of ${b.poolId}`),
    ...r.addresses.map((a) => `  address ${a.address} of ${a.poolId}`),
    ...r.pools.map((p) => `  pool ${p}`),
  ];
  return lines.join('\n');
}

/** Plain statements of what is wrong, for the end of `weave status`. */
/** Encryption states that stop all traffic with a peer, said so a person knows what to change. */
const ENCRYPTION_PROBLEMS: Partial<Record<string, (host: string) => string>> = {
  wrongPassword: (h) => `${h} has a different password: no frame passes between it and this host until WEAVE_PASSWORD (or the password file) is the same on both`,
  plaintextPeer: (h) => `${h} sends unencrypted traffic, which this host refuses: set the same WEAVE_PASSWORD there`,
  encryptedPeer: (h) => `${h} sends encrypted traffic, which this host cannot read: set the same WEAVE_PASSWORD here`,
};

export function problemsOf(r: HostReport, now: Date): string[] {
  const out = [...r.problems];
  for (const p of r.router?.peers ?? []) {
    if (p.state === 'lost') out.push(`${p.host} unreachable for ${ago(p.since, now).replace(' ago', '')} (last heard ${ago(p.lastSeen, now)})`);
    else if (p.encryption && p.encryption in ENCRYPTION_PROBLEMS) out.push(ENCRYPTION_PROBLEMS[p.encryption]!(p.host));
  }
  for (const n of r.router?.networks ?? []) if (!n.attached) out.push(`network ${n.networkId.slice(0, 12)}'s sleeve TAP ${n.tap} is not on bridge ${n.bridge}: no traffic to other hosts`);
  out.push(...hostProblems(r.host, r.ipam?.hosts ?? [], now));
  for (const e of r.netwire?.endpoints ?? []) if (!e.present) out.push(`endpoint ${e.endpointId.slice(0, 12)} (${e.address ?? '-'}) has lost its veth ${e.hostVeth}`);
  out.push(...readdressProblems(r, now));
  return out;
}

/** Endpoints taken off their network, and containers moved or left disconnected, because another host holds their address. */
function readdressProblems(r: HostReport, now: Date): string[] {
  const out: string[] = [];
  for (const e of r.netwire?.endpoints ?? []) {
    const i = e.isolated;
    if (i) out.push(`endpoint ${e.endpointId.slice(0, 12)}${i.containerId ? ` of container ${i.containerId.slice(0, 12)}` : ''} is off its network (taken off ${ago(i.at, now)}): ${i.address} is leased by ${i.takenBy}`);
  }
  for (const m of r.pluginApi?.readdress ?? []) {
    const taken = `${m.address} is leased by ${m.takenBy} (given there while this host was away)`;
    if (m.reconnect) out.push(`container ${m.container} is being moved off ${m.address} on ${m.network} (since ${ago(m.since, now)}): ${taken}`);
    else out.push(`container ${m.container} is disconnected from ${m.network}: its --ip ${taken}; connect it again with another --ip or none (docker network connect ${m.network} ${m.container})`);
  }
  return out;
}
