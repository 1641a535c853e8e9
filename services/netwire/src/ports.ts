import { formatPublishedPort, PortProtocol, PortRequest, PublishedPort } from '@weave/contracts';
import { ConflictError, ExhaustedError } from '@weave/errors';
import { Chains, commentOf, parseRuleLine, Rule } from './firewall';

/**
 * Published ports (`docker run -p`), as data: which host port each request gets, the iptables
 * rules that carry it, and what the kernel's listings say is taken. Pure; the Linux kernel turns
 * the rules into commands, tests read them directly.
 *
 * As Docker's bridge driver does without its userland proxy, for each port of an endpoint:
 * - nat WEAVE-PORTS, entered from PREROUTING (traffic from elsewhere, loopback excluded) and
 *   OUTPUT (the host's own) for local destinations: DNAT to the container;
 * - filter WEAVE-FORWARD: ACCEPT of the DNATed connection into the bridge (Docker's FORWARD DROP);
 * - nat WEAVE-POSTROUTING: MASQUERADE of the container reaching its own published port
 *   (hairpin: its veth must let the frame back out), and of the host's loopback, which a
 *   container cannot answer (the bridge must route 127.0.0.0/8: route_localnet).
 * Each rule carries the comment `weave-port:<bridge>/<host veth>`, so an endpoint's rules are
 * removed exactly, also after a crash forgot which there were.
 */
export interface EndpointPorts {
  bridge: string;
  hostVeth: string;
  ports: PublishedPort[];
}

/** A host port somebody holds, and who, as the end of "port 8080/tcp is already …". */
export interface HeldPort {
  protocol: PortProtocol;
  /** The one IPv4 address it is held on; null for every address. */
  hostIp: string | null;
  hostPort: number;
  by: string;
  /** Set when the holder is a weave endpoint: its host veth. */
  hostVeth?: string;
}

export interface PortRange {
  first: number;
  last: number;
}

const PORT_TAG = 'weave-port:';
export const portTag = (bridge: string, hostVeth: string): string => `${PORT_TAG}${bridge}/${hostVeth}`;

/** The endpoint a rule's tag names, or null when the rule is not a published port of ours. */
export function portOwnerOf(spec: readonly string[]): { bridge: string; hostVeth: string } | null {
  const tag = commentOf(spec);
  const m = tag?.startsWith(PORT_TAG) ? /^([^/]+)\/(.+)$/.exec(tag.slice(PORT_TAG.length)) : null;
  return m ? { bridge: m[1]!, hostVeth: m[2]! } : null;
}

/** `8080/tcp`, or `127.0.0.1:8080/tcp` for one address. */
export const portLabel = (p: { protocol: PortProtocol; hostIp: string | null; hostPort: number }): string =>
  `${p.hostIp ? `${p.hostIp}:` : ''}${p.hostPort}/${p.protocol}`;

const clash = (a: { protocol: string; hostIp: string | null; hostPort: number }, b: typeof a): boolean =>
  a.protocol === b.protocol && a.hostPort === b.hostPort && (a.hostIp === null || b.hostIp === null || a.hostIp === b.hostIp);

/** Whether 127.0.0.1 reaches the port: then the host's own loopback traffic must be carried. */
export const servesLoopback = (p: { hostIp: string | null }): boolean => p.hostIp === null || p.hostIp.startsWith('127.');

export interface PortPlanInput {
  requests: readonly PortRequest[];
  containerIp: string;
  /** Taken by others (not this endpoint). */
  held: readonly HeldPort[];
  /** Where a request for any port (hostPort 0) picks from: the host's ephemeral ports, as Docker does. */
  ephemeral: PortRange;
  /** What this endpoint has now: a request it still satisfies keeps its port (a repeated call changes nothing). */
  previous?: readonly PublishedPort[];
}

/**
 * The host port of each request, all or none: a port asked for by number must be free, a range
 * gives its first free port, 0 the first free ephemeral one. Throws ConflictError naming who
 * holds a port asked for, ExhaustedError when no port of the ephemeral range is free.
 */
export function planPorts(i: PortPlanInput): PublishedPort[] {
  const taken: HeldPort[] = [...i.held];
  const out: PublishedPort[] = [];
  for (const r of i.requests) {
    const free = (hostPort: number): boolean => !taken.some((h) => clash(h, { ...r, hostPort }));
    const kept = i.previous?.find((p) => sameAsked(p, r) && free(p.hostPort));
    const hostPort = kept?.hostPort ?? firstFree(r, i.ephemeral, free, taken);
    const p: PublishedPort = { protocol: r.protocol, hostIp: r.hostIp, hostPort, containerIp: i.containerIp, containerPort: r.containerPort };
    out.push(p);
    taken.push({ ...p, by: `asked for twice by this container (${formatPublishedPort(p)})` });
  }
  return out;
}

function sameAsked(p: PublishedPort, r: PortRequest): boolean {
  const inRange = r.hostPort === 0 || (p.hostPort >= r.hostPort && p.hostPort <= r.hostPortEnd);
  return p.protocol === r.protocol && p.containerPort === r.containerPort && p.hostIp === r.hostIp && inRange;
}

function firstFree(r: PortRequest, ephemeral: PortRange, free: (port: number) => boolean, taken: readonly HeldPort[]): number {
  const [first, last] = r.hostPort === 0 ? [ephemeral.first, ephemeral.last] : [r.hostPort, r.hostPortEnd];
  for (let port = first; port <= last; port++) if (free(port)) return port;
  if (r.hostPort === 0) {
    throw new ExhaustedError(`no ${r.protocol} port of this host's ephemeral range ${first}-${last} is free to publish port ${r.containerPort}/${r.protocol} on`);
  }
  const holder = taken.find((h) => clash(h, { ...r, hostPort: first }))!;
  if (first === last) throw new ConflictError(`port ${portLabel({ ...r, hostPort: first })} is already ${holder.by}`);
  const range = `${r.hostIp ? `${r.hostIp}:` : ''}${first}-${last}/${r.protocol}`;
  throw new ConflictError(`no port of ${range} is free (${first} is already ${holder.by})`);
}

/** Every rule of one endpoint's published ports. */
export function portRules(e: EndpointPorts): Rule[] {
  const tag = ['-m', 'comment', '--comment', portTag(e.bridge, e.hostVeth)];
  return e.ports.flatMap((p): Rule[] => {
    const proto = ['-p', p.protocol, '-m', p.protocol];
    const container = `${p.containerIp}/32`;
    const toContainer = [...proto, '--dport', String(p.containerPort)];
    const masquerade = (source: string): Rule => ({
      table: 'nat',
      chain: Chains.postrouting,
      position: 'last',
      spec: ['-s', source, '-d', container, ...toContainer, ...tag, '-j', 'MASQUERADE'],
    });
    return [
      {
        table: 'nat',
        chain: Chains.ports,
        position: 'last',
        spec: [...(p.hostIp ? ['-d', `${p.hostIp}/32`] : []), ...proto, '--dport', String(p.hostPort), ...tag, '-j', 'DNAT', '--to-destination', `${p.containerIp}:${p.containerPort}`],
      },
      {
        table: 'filter',
        chain: Chains.forward,
        position: 'last',
        spec: ['-d', container, '!', '-i', e.bridge, '-o', e.bridge, ...toContainer, '-m', 'conntrack', '--ctstate', 'DNAT', ...tag, '-j', 'ACCEPT'],
      },
      masquerade(container),
      ...(servesLoopback(p) ? [masquerade('127.0.0.0/8')] : []),
    ];
  });
}

/**
 * Ports published by DNAT rules in the nat table (`iptables -t nat -S`): weave's (WEAVE-PORTS,
 * this stack's or another's on the machine) and Docker's own bridge networks' (DOCKER).
 */
export function heldByNat(listing: string): HeldPort[] {
  const out: HeldPort[] = [];
  for (const line of listing.split('\n')) {
    const r = parseRuleLine(line);
    if (!r || (r.chain !== Chains.ports && r.chain !== 'DOCKER')) continue;
    const arg = (flag: string): string | undefined => {
      const i = r.spec.indexOf(flag);
      return i >= 0 && r.spec[i - 1] !== '!' ? r.spec[i + 1] : undefined;
    };
    const protocol = arg('-p');
    const hostPort = Number(arg('--dport'));
    const to = arg('--to-destination');
    if ((protocol !== 'tcp' && protocol !== 'udp') || !Number.isInteger(hostPort) || !to) continue;
    const hostIp = arg('-d')?.replace(/\/32$/, '') ?? null;
    const owner = portOwnerOf(r.spec);
    const by = owner ? `published by weave for endpoint ${owner.hostVeth} (to ${to})` : r.chain === 'DOCKER' ? `published by Docker (to ${to})` : `published by a weave rule (to ${to})`;
    out.push({ protocol, hostIp, hostPort, by, ...(owner ? { hostVeth: owner.hostVeth } : {}) });
  }
  return out;
}

/** Ports of listening TCP and bound UDP sockets, from `ss -H -l -n -t -u -p`. */
export function heldBySockets(listing: string): HeldPort[] {
  const out: HeldPort[] = [];
  for (const line of listing.split('\n')) {
    const [netid, , , , local, , ...rest] = line.trim().split(/\s+/);
    if ((netid !== 'tcp' && netid !== 'udp') || !local) continue;
    const m = /^\[?(.*?)(?:%[^\]]*)?\]?:(\d+)$/.exec(local);
    if (!m) continue;
    const address = m[1]!;
    // An IPv6 socket other than the wildcard does not take IPv4 traffic.
    if (address.includes(':') && address !== '::') continue;
    const hostIp = address === '*' || address === '0.0.0.0' || address === '::' ? null : address;
    const proc = /users:\(\("([^"]+)",pid=(\d+)/.exec(rest.join(' '));
    const who = proc ? `${proc[1]} (pid ${proc[2]})` : 'a process';
    out.push({ protocol: netid, hostIp, hostPort: Number(m[2]), by: `in use on this host: ${who} listens on ${local}` });
  }
  return out;
}

/** `/proc/sys/net/ipv4/ip_local_port_range`; Docker's own default when it does not parse. */
export function parsePortRange(text: string): PortRange {
  const [first, last] = text.trim().split(/\s+/).map(Number);
  return first && last && first <= last ? { first, last } : { first: 49153, last: 65535 };
}
