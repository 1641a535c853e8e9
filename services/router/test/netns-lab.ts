import { ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * Throwaway network namespaces for the fast path tests, named `wvfp-<pid>-<tag>-<short>` so
 * nothing of the machine's own is touched and a crashed run's leftovers can be told apart.
 * `cleanup` kills the children started in them, then deletes the namespaces, which takes their
 * devices, FDB entries and firewall rules along.
 */
export class NetnsLab {
  private readonly made: string[] = [];
  private readonly children: ChildProcess[] = [];

  constructor(private readonly tag: string) {
    removeLeftovers();
  }

  name(short: string): string {
    return `wvfp-${process.pid}-${this.tag}-${short}`;
  }

  /** A new namespace with lo up; `ipv6: false` switches IPv6 off in it (quiet links, or a host without IPv6). */
  async netns(short: string, o: { ipv6?: boolean } = {}): Promise<string> {
    const ns = this.name(short);
    await run(['ip', 'netns', 'add', ns]);
    this.made.push(ns);
    await this.sh(ns, 'ip link set lo up');
    if (o.ipv6 === false) await this.sh(ns, 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1');
    return ns;
  }

  /** Runs a shell command line inside `ns`; its stdout. */
  sh(ns: string, line: string): Promise<string> {
    return run(['ip', 'netns', 'exec', ns, 'bash', '-ec', line]);
  }

  /** A veth from `a` (named `aName`) to `b` (named `bName`), both up. */
  async veth(a: string, aName: string, b: string, bName: string, mtu = 1500): Promise<void> {
    await run(['ip', '-n', a, 'link', 'add', aName, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', bName, 'mtu', String(mtu), 'netns', b]);
    await this.sh(a, `ip link set ${aName} up`);
    await this.sh(b, `ip link set ${bName} up`);
  }

  /** One L2 underlay: a bridge in its own namespace, and `eth0` in each host with its address (a /24). */
  async underlay(hosts: ReadonlyArray<{ ns: string; address: string }>): Promise<void> {
    const u = await this.netns('ul', { ipv6: false });
    await this.sh(u, 'ip link add ul type bridge && ip link set ul up');
    for (const [i, h] of hosts.entries()) {
      await this.veth(u, `p${i}`, h.ns, 'eth0');
      await this.sh(u, `ip link set p${i} master ul`);
      await this.sh(h.ns, `ip addr add ${h.address}/24 dev eth0`);
    }
  }

  /** A process inside `ns`, killed by cleanup at the latest; its stdout as lines. */
  spawn(ns: string, argv: string[], cwd: string, onLine: (line: string) => void): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { cwd, stdio: ['pipe', 'pipe', 'inherit'] });
    this.children.push(child);
    createInterface({ input: child.stdout! }).on('line', onLine);
    return child;
  }

  async cleanup(): Promise<void> {
    await Promise.all(
      this.children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }),
    );
    for (const ns of this.made.splice(0)) await run(['ip', 'netns', 'del', ns]).catch(() => undefined);
  }
}

/** The packets a device sent and received (its kernel counters). */
export async function linkStats(lab: NetnsLab, ns: string, dev: string): Promise<{ rx: number; tx: number; txDropped: number }> {
  const [l] = JSON.parse(await lab.sh(ns, `ip -s -j link show dev ${dev}`)) as Array<{ stats64: { rx: { packets: number }; tx: { packets: number; dropped: number } } }>;
  return { rx: l!.stats64.rx.packets, tx: l!.stats64.tx.packets, txDropped: l!.stats64.tx.dropped };
}

/** Sends one UDP datagram from inside `ns` (bash's /dev/udp: no tools needed); a send error is ignored. */
export const sendUdp = (lab: NetnsLab, ns: string, to: string, port: number): Promise<string> =>
  lab.sh(ns, `echo probe >/dev/udp/${to}/${port} 2>/dev/null || true`);

/** The packet count of the first rule in `iptables -v -S <chain>` (in `ns`) that contains `match`. */
export async function iptablesCount(lab: NetnsLab, ns: string, chain: string, match: string, tool = 'iptables'): Promise<number> {
  const line = (await lab.sh(ns, `${tool} -w 5 -v -S ${chain}`)).split('\n').find((l) => l.startsWith('-A') && l.includes(match));
  if (!line) throw new Error(`no rule with ${JSON.stringify(match)} in ${chain} of ${ns}`);
  return Number(/ -c (\d+) /.exec(line + ' ')?.[1]);
}

/** The packet count of the rule in ebtables chain `chain` (in `ns`) that contains `match`. */
export async function ebtablesCount(lab: NetnsLab, ns: string, chain: string, match: string): Promise<number> {
  const line = (await lab.sh(ns, `ebtables -L ${chain} --Lc`)).split('\n').find((l) => l.includes(match));
  if (!line) throw new Error(`no rule with ${JSON.stringify(match)} in ebtables ${chain} of ${ns}`);
  return Number(/pcnt = (\d+)/.exec(line)?.[1]);
}

function run(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 15_000 }, (err, out, stderr) =>
      err ? reject(new Error(`${argv.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(out),
    ),
  );
}

/** Namespaces of earlier runs whose process is gone (killed before its cleanup ran). */
function removeLeftovers(): void {
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return;
  }
  for (const ns of names) {
    const pid = /^wvfp-(\d+)-/.exec(ns)?.[1];
    if (pid && Number(pid) !== process.pid && !alive(Number(pid))) execFile('ip', ['netns', 'del', ns], () => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
