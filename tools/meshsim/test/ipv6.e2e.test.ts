import { docker, dockerResult } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { hostDocker, hostName, inContainerNet, inHost, meshDown, meshUp, presentHosts, weaveCli } from '../src/mesh';

/**
 * IPv6 across three simulated hosts: `docker network create --ipv6` without `--subnet` gets an
 * IPv6 /64 of the mesh's ULA prefix (and an IPv4 default subnet), the network appears on every
 * host with the same subnets, and containers on different hosts find each other by neighbour
 * discovery (solicited-node multicast, ff02::1:ffXX:XXXX, must cross hosts) and exchange ICMPv6
 * and TCP over IPv6: on the kernel's VXLAN (a /24 IPv4 subnet has a VNI) and on the sleeve (a
 * /25 has none). One mesh for the file; every test removes what it made, also when it fails.
 */
const HOSTS = 3;
const hosts = Array.from({ length: HOSTS }, (_, i) => i + 1);
const log = (m: string) => process.stderr.write(`[mesh:ipv6] ${m}\n`);
let owned = false;

beforeAll(async () => {
  const present = presentHosts();
  if (present.length) throw new Error(`simulated hosts ${present.join(', ')} already exist: tools/mesh down first`);
  owned = true;
  await meshUp({ hosts: HOSTS, log });
}, 300_000);

afterAll(async () => {
  if (owned) await meshDown({ log });
}, 180_000);

const on = (n: number, args: string[], timeoutMs = 60_000) => docker(args, { host: hostDocker(n), timeoutMs });
const tryOn = (n: number, args: string[], timeoutMs = 60_000) => dockerResult(args, { host: hostDocker(n), timeoutMs });

interface Ipam {
  Config: Array<{ Subnet: string; Gateway?: string }>;
}
const ipamOf = async (n: number, net: string): Promise<Ipam> => JSON.parse(await on(n, ['network', 'inspect', '-f', '{{json .IPAM}}', net])) as Ipam;
const v6SubnetOf = (i: Ipam): string | undefined => i.Config.find((c) => c.Subnet.includes(':'))?.Subnet;

interface Member {
  host: number;
  name: string;
  v4: string;
  v6: string;
  mac: string;
}

/**
 * A `--ipv6` network made on host 1 (`extra`: more `network create` flags), on every host, with one
 * container per host; `f` runs with them, and everything goes afterwards, whatever happened.
 */
async function withV6Network(net: string, extra: string[], f: (members: Member[], subnet: string) => Promise<void>): Promise<void> {
  const members: Member[] = hosts.map((n) => ({ host: n, name: `${net.replace(/\W/g, '')}-${n}`, v4: '', v6: '', mac: '' }));
  try {
    await on(1, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--ipv6', ...extra, net]);
    for (const n of hosts.slice(1)) await waitFor(async () => (await tryOn(n, ['network', 'inspect', net])).ok || null, { what: `${net} on ${hostName(n)}`, timeoutMs: 10_000 });
    const subnet = v6SubnetOf(await ipamOf(1, net));
    if (!subnet) throw new Error(`${net} has no IPv6 subnet on ${hostName(1)}: ${JSON.stringify(await ipamOf(1, net))}`);
    for (const m of members) {
      await on(m.host, ['run', '-d', '--name', m.name, '--net', net, 'weave-bbox:local', 'sleep', '1d']);
      const [v4, v6, mac] = (await on(m.host, ['inspect', '-f', `{{with index .NetworkSettings.Networks "${net}"}}{{.IPAddress}} {{.GlobalIPv6Address}} {{.MacAddress}}{{end}}`, m.name])).trim().split(' ');
      Object.assign(m, { v4, v6, mac });
    }
    await f(members, subnet);
  } finally {
    await Promise.all(members.map((m) => tryOn(m.host, ['rm', '-f', m.name])));
    await tryOn(1, ['network', 'rm', net]);
  }
  for (const n of hosts) await waitFor(async () => !(await tryOn(n, ['network', 'inspect', net])).ok || null, { what: `${net} gone from ${hostName(n)}`, timeoutMs: 10_000 });
}

const ping6 = async (from: Member, to: Member): Promise<boolean> => (await tryOn(from.host, ['exec', from.name, 'ping', '-6', '-c', '1', '-W', '2', to.v6])).ok;

/** One TCP exchange over IPv6, `client` to `server` (node in the containers' netns: busybox's nc may lack IPv6). */
async function tcp6(client: Member, server: Member): Promise<string> {
  const listen = inContainerNet(server.host, server.name, process.execPath, [
    '-e',
    `const s = require('node:net').createServer((c) => c.end('hello over IPv6 from ' + c.localAddress + ' to ' + c.remoteAddress)); s.listen(7100, '${server.v6}', () => console.log('up')); setTimeout(() => process.exit(0), 8000);`,
  ]);
  const connect = inContainerNet(client.host, client.name, process.execPath, [
    '-e',
    `const go = (left) => { const c = require('node:net').connect({ host: '${server.v6}', port: 7100 }); let got = ''; c.on('data', (d) => (got += d)); c.on('end', () => { console.log(got); process.exit(0); }); c.on('error', (e) => (left > 0 ? setTimeout(() => go(left - 1), 200) : (console.error(String(e)), process.exit(2)))); }; go(25);`,
  ]);
  const [, got] = await Promise.all([listen, connect]);
  if (got.code !== 0) throw new Error(`TCP over IPv6 from ${client.name} to ${server.name} [${server.v6}]: ${got.stderr}`);
  return got.stdout.trim();
}

/** Every pair both ways: ICMPv6 echo, the peer's MAC learnt by neighbour discovery, TCP. */
async function everyPairTalks(members: Member[]): Promise<void> {
  for (const a of members) {
    for (const b of members.filter((x) => x !== a)) {
      // The first echo waits for neighbour discovery across hosts; a retry covers a slow first NS.
      const ok = await waitFor(async () => (await ping6(a, b)) || null, { what: `ping -6 from ${a.name} to ${b.name} [${b.v6}]`, timeoutMs: 10_000, intervalMs: 200 }).catch(() => false);
      expect({ from: a.name, to: b.name, ok }).toEqual({ from: a.name, to: b.name, ok: true });
      expect(await on(a.host, ['exec', a.name, 'ip', '-6', 'neigh', 'show', b.v6])).toContain(b.mac);
      expect(await tcp6(a, b)).toBe(`hello over IPv6 from ${b.v6} to ${a.v6}`);
    }
  }
}

interface RouterStatus {
  peers: Array<{ host: string; path: string | null }>;
  networks: Array<{ networkId: string; vxlan?: { device: string; vni: number; up: boolean } }>;
  sleeve: Record<string, string>;
}
const routerStatus = async (n: number): Promise<RouterStatus> => (JSON.parse(await weaveCli(n, ['status', '--json'])) as { router: RouterStatus }).router;
const networkId = async (n: number, net: string) => (await on(n, ['network', 'inspect', '-f', '{{.Id}}', net])).trim();
/** Packets sent by `net`'s VXLAN device on host n (netlink, not /sys, which shows another namespace). */
const vxlanTx = async (n: number, net: string): Promise<number> => {
  const id = await networkId(n, net);
  const dev = (await routerStatus(n)).networks.find((x) => x.networkId === id)?.vxlan?.device;
  if (!dev) throw new Error(`${net} has no VXLAN device on ${hostName(n)}`);
  const r = await inHost(n, 'ip', ['-j', '-s', 'link', 'show', 'dev', dev]);
  if (r.code !== 0) throw new Error(`${dev} on ${hostName(n)}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<{ stats64: { tx: { packets: number } } }>)[0]!.stats64.tx.packets;
};
const framesToPeers = async (n: number) => BigInt((await routerStatus(n)).sleeve.framesToPeers ?? '0');

/** Drops counted by the catch-all DROP of ip6tables WEAVE-ISOLATE on host n. */
const isolateDrops6 = async (n: number): Promise<number> => {
  const r = await inHost(n, 'ip6tables', ['-w', '5', '-S', 'WEAVE-ISOLATE', '-v']);
  if (r.code !== 0) throw new Error(`ip6tables on ${hostName(n)}: ${r.stderr}`);
  return Number(/ -c (\d+) /.exec(r.stdout.split('\n').find((l) => l.includes('-j DROP') && !l.includes('comment')) ?? '')?.[1] ?? NaN);
};

/** `a` cannot reach `b` (same host, another weave network) over IPv6 while that host forwards IPv6. */
async function isolatedOverIpv6(a: Member, b: Member): Promise<void> {
  if (a.host !== b.host) throw new Error('isolatedOverIpv6 needs two containers on one host');
  const sysctl = (value: string) => inHost(a.host, 'sysctl', ['-qw', `net.ipv6.conf.all.forwarding=${value}`]);
  const was = (await inHost(a.host, 'cat', ['/proc/sys/net/ipv6/conf/all/forwarding'])).stdout.trim() || '0';
  await sysctl('1');
  try {
    const before = await isolateDrops6(a.host);
    expect({ from: a.name, to: b.name, ok: await ping6(a, b) }).toEqual({ from: a.name, to: b.name, ok: false });
    expect(await isolateDrops6(a.host)).toBeGreaterThan(before);
  } finally {
    await sysctl(was);
  }
}

/** The first `groups` 16-bit groups of an IPv6 address or prefix, written out in full. */
const groupsOf = (ip: string, groups: number): string => {
  const [head, tail] = ip.split('/')[0]!.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return all.slice(0, groups).map((g) => g.padStart(4, '0')).join(':');
};

test('--ipv6 without --subnet: one /64 of the mesh ULA on every host; containers on different hosts ping and talk TCP over IPv6 on the fast path', async () => {
  const NET = 'weave:v6fast';
  await withV6Network(NET, [], async (members, subnet) => {
    log(`${NET}: ${subnet}, containers ${members.map((m) => `${m.name} ${m.v4} ${m.v6}`).join(', ')}`);
    expect(subnet).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}(:[0-9a-f]{1,4})?::\/64$/);
    // The same subnets everywhere (plugin-api replicates it with both), and an IPv4 default one too.
    for (const n of hosts) {
      const ipam = await ipamOf(n, NET);
      expect({ host: n, v6: v6SubnetOf(ipam), v4: ipam.Config.filter((c) => !c.Subnet.includes(':')).length }).toEqual({ host: n, v6: subnet, v4: 1 });
    }
    // Docker asked for the gateway with RequestAddress (our RequestPool gives none): ipam recorded it.
    const pools = (JSON.parse(await weaveCli(2, ['status', '--json'])) as { ipam: { pools: Array<{ pool: string; gateway: string | null }> } }).ipam.pools;
    expect(pools.find((p) => p.pool === subnet)?.gateway).toBe(`${subnet.split('/')[0]}1`);
    for (const m of members) expect(groupsOf(m.v6, 4)).toBe(groupsOf(subnet, 4));
    expect(new Set(members.map((m) => m.v6)).size).toBe(HOSTS);
    expect(await weaveCli(3, ['networks'])).toContain(subnet);

    for (const n of hosts) {
      for (const m of hosts.filter((x) => x !== n)) {
        await waitFor(async () => (await routerStatus(n)).peers.find((p) => p.host === hostName(m))?.path === 'fastpath' || null, { what: `${hostName(n)} → ${hostName(m)} on the fast path`, timeoutMs: 15_000 });
      }
    }
    const [tx0, sleeve0] = [await vxlanTx(1, NET), await framesToPeers(1)];
    await everyPairTalks(members);
    // The kernel's VXLAN carried it; the sleeve did not.
    expect(await vxlanTx(1, NET)).toBeGreaterThan(tx0);
    expect(await framesToPeers(1)).toBe(sleeve0);
    // Weave DNS answers a name's AAAA with its container's IPv6 address, across hosts.
    const [a, , c] = members as [Member, Member, Member];
    await waitFor(
      async () => {
        const r = await tryOn(c.host, ['exec', c.name, 'nslookup', '-type=aaaa', a.name]);
        return r.ok && r.out.includes(a.v6) ? true : null;
      },
      { what: `${a.name}'s IPv6 address by name in ${c.name} on ${hostName(c.host)}`, timeoutMs: 15_000, intervalMs: 300 },
    );
  });
}, 180_000);

test('--ipv6 on a network the sleeve carries (a /25 IPv4 subnet has no VNI): its own /64 of the same ULA /48, ping and TCP over IPv6 across hosts', async () => {
  const NET = 'weave:v6sleeve';
  const fast = 'weave:v6other';
  // A second default network first, so this one's /64 must be another of the same /48.
  await withV6Network(fast, [], async (others, otherSubnet) => {
    await withV6Network(NET, ['--subnet', '10.252.11.0/25'], async (members, subnet) => {
      log(`${NET}: ${subnet} (and ${otherSubnet}), containers ${members.map((m) => `${m.name} ${m.v4} ${m.v6}`).join(', ')}`);
      expect(subnet).not.toBe(otherSubnet);
      expect(groupsOf(subnet, 3)).toBe(groupsOf(otherSubnet, 3));
      const id = await networkId(1, NET);
      for (const n of hosts) expect((await routerStatus(n)).networks.find((x) => x.networkId === id)?.vxlan).toBeUndefined();
      const sleeve0 = await framesToPeers(1);
      await everyPairTalks(members);
      expect(await framesToPeers(1)).toBeGreaterThan(sleeve0);
      // The two networks stay apart over IPv6, also on a host that routes IPv6 between its bridges.
      await isolatedOverIpv6(members[0]!, others[0]!);
    });
  });
}, 240_000);

test('a /64 released with its network is free again mesh-wide, and the next default one is of the same ULA /48', async () => {
  const pools = async (n: number) => (JSON.parse(await weaveCli(n, ['status', '--json'])) as { ipam: { pools: Array<{ pool: string }> } }).ipam.pools.map((p) => p.pool);
  const v6Pools = async () => (await pools(2)).filter((p) => p.includes(':'));
  // The earlier tests' pools go when the last host's copy of their network does: not before.
  await waitFor(async () => (await v6Pools()).length === 0 || null, { what: 'no IPv6 pool left from the tests before', timeoutMs: 15_000 });
  /** Makes `net` on host n with `flags`, returns its IPv6 subnet, and removes it from every host again. */
  const once = async (n: number, net: string, flags: string[]): Promise<string> => {
    let subnet: string | undefined;
    try {
      await on(n, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--ipv6', ...flags, net]);
      subnet = v6SubnetOf(await ipamOf(n, net));
    } finally {
      await tryOn(n, ['network', 'rm', net]);
    }
    for (const m of hosts) await waitFor(async () => !(await tryOn(m, ['network', 'inspect', net])).ok || null, { what: `${net} gone from ${hostName(m)}`, timeoutMs: 10_000 });
    await waitFor(async () => (await v6Pools()).length === 0 || null, { what: `${subnet} released`, timeoutMs: 15_000 });
    return subnet!;
  };
  const first = await once(2, 'weave:v6again1', []);
  // Taken by name on another host: nothing of the first network holds it any more.
  expect(await once(3, 'weave:v6again2', ['--subnet', first])).toBe(first);
  const next = await once(1, 'weave:v6again3', []);
  expect(groupsOf(next, 3)).toBe(groupsOf(first, 3));
}, 120_000);
