import type { BridgeFirewall } from './kernel';
import { Prefix } from './names';

/**
 * The iptables rules netwire owns, as data. Pure: the Linux kernel implementation turns them
 * into commands, tests read them directly.
 *
 * All our rules live in chains of our own, entered from the top of the built-in chains, so
 * they are found, audited and removed without touching anyone else's, and Docker's
 * `FORWARD DROP` (with br_netfilter, bridged frames traverse FORWARD) does not see our traffic
 * first. Each rule carries the comment `weave:<bridge>` so the rules of one bridge can be
 * removed exactly, also after a crash forgot which were added.
 */
export const Chains = {
  forward: 'WEAVE-FORWARD',
  postrouting: 'WEAVE-POSTROUTING',
  isolate: 'WEAVE-ISOLATE',
  /** nat: published ports' DNATs (see ports.ts). */
  ports: 'WEAVE-PORTS',
  /** raw: what must be dropped before anything else sees it. */
  prerouting: 'WEAVE-PREROUTING',
  /** nat: containers' queries to the host's resolvers, turned to weave DNS (see dns/upstreams.ts). */
  dns: 'WEAVE-DNS',
} as const;

/** Every chain of ours, in the order they are created (before any rule refers to them). */
export const ownChains: ReadonlyArray<readonly [Table, string]> = [
  ['filter', Chains.forward],
  ['filter', Chains.isolate],
  ['nat', Chains.postrouting],
  ['nat', Chains.ports],
  ['nat', Chains.dns],
  ['raw', Chains.prerouting],
];

export type Table = 'filter' | 'nat' | 'raw';

export interface Rule {
  table: Table;
  chain: string;
  /** `first` rules are inserted at the top of the chain, `last` ones appended. */
  position: 'first' | 'last';
  /** The rule after the chain name, in the order `iptables -S` prints it, so listings compare. */
  spec: string[];
}

const TAG_PREFIX = 'weave:';
export const tagOf = (bridge: string): string => TAG_PREFIX + bridge;

/**
 * The rules that do not belong to one bridge: the jumps into our chains, and isolation between
 * weave networks as Docker isolates its own bridge networks. A frame from one weave bridge to
 * another goes through WEAVE-ISOLATE, where only a bridge's own traffic returns (each bridge
 * adds its RETURN at the top); everything else falls to the DROP at the bottom.
 */
export const jumpRules: readonly Rule[] = [
  { table: 'filter', chain: 'FORWARD', position: 'first', spec: ['-j', Chains.forward] },
  { table: 'nat', chain: 'POSTROUTING', position: 'first', spec: ['-j', Chains.postrouting] },
  { table: 'filter', chain: Chains.forward, position: 'first', spec: ['-i', `${Prefix.bridge}+`, '-o', `${Prefix.bridge}+`, '-j', Chains.isolate] },
  { table: 'filter', chain: Chains.isolate, position: 'last', spec: ['-j', 'DROP'] },
  // Published ports: local destinations, from elsewhere and from the host itself. Loopback only
  // from the host: a packet from outside addressed to 127.0.0.1 must stay a martian, not be
  // turned into one for a container that published on 127.0.0.1 alone.
  { table: 'nat', chain: 'PREROUTING', position: 'first', spec: ['!', '-d', '127.0.0.0/8', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', Chains.ports] },
  { table: 'nat', chain: 'OUTPUT', position: 'first', spec: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', Chains.ports] },
  // A connection to a published port is let across networks, as it would be from another host.
  { table: 'filter', chain: Chains.isolate, position: 'first', spec: ['-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'RETURN'] },
  // Bridges that carry the host's loopback to published ports route 127.0.0.0/8 (route_localnet),
  // which would also let a container reach the host's loopback services: nothing from a weave
  // bridge addressed to 127.0.0.0/8 gets further than here.
  { table: 'raw', chain: 'PREROUTING', position: 'first', spec: ['-j', Chains.prerouting] },
  { table: 'raw', chain: Chains.prerouting, position: 'last', spec: ['-d', '127.0.0.0/8', '-i', `${Prefix.bridge}+`, '-j', 'DROP'] },  // Containers' queries to the host's resolvers: to weave DNS (see dnsRules).
  { table: 'nat', chain: 'PREROUTING', position: 'first', spec: ['-i', `${Prefix.bridge}+`, '-j', Chains.dns] },
];

/** Which of iptables (4) and ip6tables (6) a rule goes to. */
export type Family = 4 | 6;

const IPV4_LITERAL = /^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/;

/**
 * The rules ip6tables needs as well. IPv6 crosses the same bridges (`--ipv6` networks), and a host
 * that forwards IPv6 would route between weave networks, and out of internal ones, past rules kept
 * in iptables alone. Only the filter table's, and none that names an IPv4 address: NAT (published
 * ports, DNS, masquerade) and the guard of 127.0.0.0/8 are IPv4's alone.
 */
export const ipv6Counterparts = (rules: readonly Rule[]): Rule[] => rules.filter((r) => r.table === 'filter' && !r.spec.some((w) => IPV4_LITERAL.test(w)));

/** Our chains in ip6tables: the filter table's. */
export const ownChainsV6 = ownChains.filter(([table]) => table === 'filter');

export function bridgeRules(f: BridgeFirewall): Rule[] {
  const br = f.bridge;
  const tag = ['-m', 'comment', '--comment', tagOf(br)];
  const fwd = (position: Rule['position'], spec: string[]): Rule => ({ table: 'filter', chain: Chains.forward, position, spec });
  // Container to container on the same bridge: br_netfilter sends these frames through
  // FORWARD, whose policy Docker sets to DROP.
  const local = fwd('last', ['-i', br, '-o', br, ...tag, '-j', 'ACCEPT']);
  const own: Rule = { table: 'filter', chain: Chains.isolate, position: 'first', spec: ['-i', br, '-o', br, ...tag, '-j', 'RETURN'] };
  if (f.internal) {
    // Inserted at the top, so no other network's outbound ACCEPT lets traffic in or out first.
    return [
      fwd('first', ['-i', br, '!', '-o', br, ...tag, '-j', 'DROP']),
      fwd('first', ['!', '-i', br, '-o', br, ...tag, '-j', 'DROP']),
      own,
      local,
    ];
  }
  return [
    own,
    local,
    ...dnsRules(f, tag),
    fwd('last', ['-i', br, '!', '-o', br, ...tag, '-j', 'ACCEPT']),
    fwd('last', ['-o', br, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...tag, '-j', 'ACCEPT']),
    ...f.masquerade.map(
      (subnet): Rule => ({ table: 'nat', chain: Chains.postrouting, position: 'last', spec: ['-s', subnet, '!', '-o', br, ...tag, '-j', 'MASQUERADE'] }),
    ),
  ];
}

/**
 * A query from the bridge's containers to one of the resolvers Docker gave them goes to weave DNS
 * on the bridge's gateway instead; replies are un-NATed by conntrack, so the container sees its
 * resolver answer. Other destinations (a resolver chosen with `--dns`) are left alone.
 */
function dnsRules(f: BridgeFirewall, tag: string[]): Rule[] {
  if (!f.dns) return [];
  const { gateway, intercepted } = f.dns;
  return intercepted.flatMap((resolver) =>
    (['udp', 'tcp'] as const).map(
      (proto): Rule => ({
        table: 'nat',
        chain: Chains.dns,
        position: 'last',
        spec: ['-d', `${resolver}/32`, '-i', f.bridge, '-p', proto, '-m', proto, '--dport', '53', ...tag, '-j', 'DNAT', '--to-destination', `${gateway}:53`],
      }),
    ),
  );
}

/** One line of `iptables -S <chain>` ("-A CHAIN args…") as chain and args; null for policies and `-N`. */
export function parseRuleLine(line: string): { chain: string; spec: string[] } | null {
  const words = splitWords(line);
  if (words[0] !== '-A' || words.length < 2) return null;
  return { chain: words[1]!, spec: words.slice(2) };
}

/** A rule's comment (where our tags are), if it has one. */
export function commentOf(spec: readonly string[]): string | undefined {
  const i = spec.indexOf('--comment');
  return i >= 0 ? spec[i + 1] : undefined;
}

/** The bridge a rule is tagged for, or null when it is not one of ours. */
export function bridgeOfTag(spec: readonly string[]): string | null {
  const tag = commentOf(spec);
  return tag?.startsWith(TAG_PREFIX) ? tag.slice(TAG_PREFIX.length) : null;
}

export const sameSpec = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((w, i) => w === b[i]);

/** Splits an `iptables -S` line; iptables double-quotes words that contain spaces. */
function splitWords(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}
