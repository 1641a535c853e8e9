import { readdirSync } from 'node:fs';
import { DEFAULT_VXLAN_PORT } from '@weave/contracts';
import { LinuxFastPathPlumbing } from '@weave/router/src/vxlan';
import { LinuxFastPathGuard } from '@weave/router/src/vxlan-guard';
import { inNs, ipBatch, run } from './exec';
import { alive } from './proc';

/**
 * The benchmark's own two-host topology, all in network namespaces named `wvbm-<pid>-…` (the
 * pid of the benchmark that made them, so a second run can tell its leftovers from a live run):
 *
 *   c1 ── eth0 ⇄ port0 ── br0 (h1) ── ul0 ⇄ ul0 ── br0 (h2) ── port0 ⇄ eth0 ── c2
 *   c1 ── direct0 ⇄ direct0 ── c2                                     (the plain veth path)
 *
 * ul0 is the underlay (10.254.253.0/24, MTU 1500). Each path puts one device on both bridges:
 * `vxlan0` (kernel VXLAN set up by hand: VNI 4242, unicast to the other host on 4789), `wvx…`
 * (weave's fast path: the router's own VXLAN plumbing and guard rules, as a host runs it, with the
 * network MTU weave gives containers), `sleeve0` (the TAP that the sleeve process of that host
 * opens) or `sealed0` (the TAP of a second sleeve process that encrypts), one at a time, and sets
 * the container MTU it needs.
 * No namespace has a default route and nothing is connected to the machine's own namespace, so
 * no packet can leave this topology.
 */
export const NS_PREFIX = 'wvbm-';
export const PATHS = ['sleeve', 'sealed', 'fastpath', 'vxlan', 'veth'] as const;
export type PathName = (typeof PATHS)[number];

const UNDERLAY_MTU = 1500;
/** Container MTU per path: sleeve = 20 B header + 2 B length + UDP/IPv4 (64 in all with slack); VXLAN 50. */
export const MTU: Record<PathName, number> = { sleeve: UNDERLAY_MTU - 64, sealed: UNDERLAY_MTU - 96, fastpath: UNDERLAY_MTU - 64, vxlan: UNDERLAY_MTU - 50, veth: UNDERLAY_MTU };
export const SLEEVE_PORT = 6784;
/** The TAP each sleeve process opens (and the benchmark then puts on its host's bridge). */
export const SLEEVE_TAP = 'sleeve0';

/** The paths run by sleeve processes: the plain sleeve, and the encrypted one (own TAP and port). */
export const SLEEVE_PATHS = {
  sleeve: { tap: SLEEVE_TAP, port: 6784, password: undefined },
  sealed: { tap: 'sealed0', port: 6787, password: 'bench:mesh encrypted sleeve' },
} as const;
export type SleevePath = keyof typeof SLEEVE_PATHS;
export const isSleevePath = (p: PathName): p is SleevePath => p in SLEEVE_PATHS;
const VNI = 4242;
/** Weave's fast path device, named and numbered as the router does for a network at 10.254.252.0/24. */
const FASTPATH = { name: 'wvx0afefc00', vni: 0x0afefc };

export const underlayIp = (host: 1 | 2): string => `10.254.253.${host}`;
const bridgedIp = (host: 1 | 2): string => `10.254.252.${host}`;
const directIp = (host: 1 | 2): string => `10.254.251.${host}`;
/** Where c1 sends to for each path. */
export const target = (path: PathName): string => (path === 'veth' ? directIp(2) : bridgedIp(2));
/** The interface of c2 the path's traffic arrives on. */
export const receiverDevice = (path: PathName): string => (path === 'veth' ? 'direct0' : 'eth0');

export interface Names {
  host: Record<1 | 2, string>;
  container: Record<1 | 2, string>;
}

export const names = (runId: number): Names => ({
  host: { 1: `${NS_PREFIX}${runId}-h1`, 2: `${NS_PREFIX}${runId}-h2` },
  container: { 1: `${NS_PREFIX}${runId}-c1`, 2: `${NS_PREFIX}${runId}-c2` },
});

const other = (h: 1 | 2): 1 | 2 => (h === 1 ? 2 : 1);
const HOSTS = [1, 2] as const;

/** Things to undo, newest first; every step of set-up registers its undo before the next one. */
export class Undo {
  readonly #steps: { what: string; undo: () => Promise<unknown> }[] = [];
  #running: Promise<void> | undefined;

  push(what: string, undo: () => Promise<unknown>): void {
    this.#steps.push({ what, undo });
  }

  /** Runs every undo once (later calls share the first run); failures are reported, not thrown. */
  runAll(log: (msg: string) => void): Promise<void> {
    this.#running ??= (async () => {
      for (const s of this.#steps.splice(0).reverse()) {
        await s.undo().catch((e: Error) => log(`cleanup: ${s.what}: ${e.message}`));
      }
    })();
    return this.#running;
  }
}

/** Ends the processes still inside `ns` (by pid) and deletes it, with every link in it. */
export async function deleteNamespace(ns: string): Promise<void> {
  const pids = (await run(['ip', 'netns', 'pids', ns]).catch(() => '')).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
  await run(['ip', 'netns', 'del', ns]);
}

/** Namespaces left by benchmark runs whose process is gone (a crash, a SIGKILL). */
export function leftoverNamespaces(): string[] {
  let all: string[];
  try {
    all = readdirSync('/run/netns');
  } catch {
    return [];
  }
  const re = new RegExp(`^${NS_PREFIX}(\\d+)-`);
  return all.filter((ns) => {
    const m = re.exec(ns);
    return m !== null && (Number(m[1]) === process.pid || !alive(Number(m[1])));
  });
}

async function addNamespace(ns: string, undo: Undo, sysctls: string[]): Promise<void> {
  await run(['ip', 'netns', 'add', ns]);
  undo.push(`delete netns ${ns}`, () => deleteNamespace(ns));
  // No IPv6: nothing but the benchmark's own traffic on the links (no RS, MLD, DAD).
  // -e: bridge-nf-call-* exist only when br_netfilter is loaded; off, the bridges stay plain L2.
  await run(inNs(ns, ['sysctl', '-q', '-e', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', ...sysctls]));
}

const NO_BRIDGE_NETFILTER = ['net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0', 'net.bridge.bridge-nf-call-arptables=0'];

/** Builds the topology (without the sleeve processes); every step is registered with `undo`. */
export async function createTopology(n: Names, paths: readonly PathName[], undo: Undo): Promise<void> {
  for (const h of HOSTS) {
    await addNamespace(n.host[h], undo, NO_BRIDGE_NETFILTER);
    await addNamespace(n.container[h], undo, []);
  }
  await ipBatch(n.host[1], [`link add ul0 mtu ${UNDERLAY_MTU} type veth peer name ul0 netns ${n.host[2]}`]);
  for (const h of HOSTS) {
    await ipBatch(n.host[h], [
      'link set lo up',
      `addr add ${underlayIp(h)}/24 dev ul0`,
      'link set ul0 up',
      'link add br0 type bridge',
      'link set br0 up',
      `link add port0 mtu ${UNDERLAY_MTU} type veth peer name eth0 netns ${n.container[h]}`,
      'link set port0 master br0 up',
      ...(paths.includes('vxlan')
        ? [`link add vxlan0 mtu ${MTU.vxlan} type vxlan id ${VNI} local ${underlayIp(h)} remote ${underlayIp(other(h))} dstport 4789 dev ul0`]
        : []),
    ]);
    await ipBatch(n.container[h], ['link set lo up', `addr add ${bridgedIp(h)}/24 dev eth0`, 'link set eth0 up']);
  }
  await ipBatch(n.container[1], [`link add direct0 mtu ${MTU.veth} type veth peer name direct0 netns ${n.container[2]}`]);
  for (const h of HOSTS) await ipBatch(n.container[h], [`addr add ${directIp(h)}/24 dev direct0`, 'link set direct0 up']);
}

const DEVICE: Partial<Record<PathName, string>> = { sleeve: SLEEVE_TAP, sealed: SLEEVE_PATHS.sealed.tap, vxlan: 'vxlan0', fastpath: FASTPATH.name };

/** Puts the path's device on both bridges and sets its container MTU on the bridged links. */
export async function activate(n: Names, path: PathName): Promise<void> {
  const dev = DEVICE[path];
  if (!dev) return;
  const mtu = MTU[path];
  for (const h of HOSTS) {
    await ipBatch(n.host[h], [`link set port0 mtu ${mtu}`]);
    if (path === 'fastpath') await fastPathUp(n, h, mtu);
    else await ipBatch(n.host[h], [`link set ${dev} mtu ${mtu} master br0 up`]);
    await ipBatch(n.container[h], [`link set eth0 mtu ${mtu}`]);
  }
}

/** What the router does for a network on a host whose peer answers over VXLAN: guard, device, flood entry. */
async function fastPathUp(n: Names, h: 1 | 2, mtu: number): Promise<void> {
  const o = { netns: n.host[h] };
  const peers = [underlayIp(other(h))];
  await new LinuxFastPathGuard(o).guard({ local: underlayIp(h), port: DEFAULT_VXLAN_PORT, peers });
  const plumbing = new LinuxFastPathPlumbing(o);
  await plumbing.ensure({ ...FASTPATH, local: underlayIp(h), port: DEFAULT_VXLAN_PORT, bridge: 'br0', mtu });
  await plumbing.setPeers(FASTPATH.name, peers);
}

/** Takes the path's device off both bridges again (the fast path's device and guard rules go). */
export async function deactivate(n: Names, path: PathName): Promise<void> {
  const dev = DEVICE[path];
  if (!dev) return;
  for (const h of HOSTS) {
    if (path === 'fastpath') {
      await new LinuxFastPathPlumbing({ netns: n.host[h] }).remove(FASTPATH.name);
      await new LinuxFastPathGuard({ netns: n.host[h] }).remove();
    } else await ipBatch(n.host[h], [`link set ${dev} down nomaster`]);
  }
}
