import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { DEFAULT_VXLAN_PORT } from '@weave/contracts';
import { docker, dockerResult } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { hostAddress, hostDocker, hostName, hostNs, inContainerNet, inHost, INTRUDER_NS, LOG_DIR, meshDown, meshUp, natsView, presentHosts, restartHost, sendGarbage, UNDERLAY_NS, weaveCli, withIntruder, withResolver } from '../src/mesh';
import { UPSTREAM_ANSWER } from '../src/resolver';

/**
 * Three simulated Docker hosts (own netns, own dockerd, own /run/docker/plugins) running weave's
 * stack with WEAVE_PEERS: their nats-servers form one cluster, the routers find each other, a
 * network created on one host appears on the others, the IPAM is mesh-wide, and containers on
 * different hosts share one L2 segment: over the kernel's VXLAN between hosts where it works, over
 * the routers' sleeve where it does not (a blocked port) and for networks with no VXLAN id.
 * The tests build on each other in file order (one mesh, brought up once).
 */
const HOSTS = 3;
const CONTAINERS = 100;
const SUBNET = '10.252.7.0/24';
const NET = 'weave:meshtest';
const NET2 = 'weave:meshother';
/** Narrower than /24: no VXLAN id, so its traffic takes the sleeve between every pair of hosts. */
const SUBNET2 = '10.252.8.0/25';
const hosts = Array.from({ length: HOSTS }, (_, i) => i + 1);
const log = (m: string) => process.stderr.write(`[mesh] ${m}\n`);

let upMs = 0;
let owned = false;

beforeAll(async () => {
  const present = presentHosts();
  // Never tear down a mesh someone else brought up: say so instead.
  if (present.length) throw new Error(`simulated hosts ${present.join(', ')} already exist: tools/mesh down first`);
  owned = true;
  const t0 = Date.now();
  await meshUp({ hosts: HOSTS, log });
  upMs = Date.now() - t0;
}, 300_000);

afterAll(async () => {
  if (!owned) return;
  const t0 = Date.now();
  await meshDown({ log });
  log(`mesh up ${(upMs / 1000).toFixed(1)} s, down ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}, 180_000);

const on = (n: number, args: string[], timeoutMs = 60_000) => docker(args, { host: hostDocker(n), timeoutMs });
const tryOn = (n: number, args: string[], timeoutMs = 60_000) => dockerResult(args, { host: hostDocker(n), timeoutMs });
/** stdout of a docker command that may fail; '' when it did. */
const outOf = async (n: number, args: string[]): Promise<string> => {
  const r = await tryOn(n, args);
  return r.ok ? r.out : '';
};
const ipOf = (n: number, name: string, net = NET) => on(n, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name]);
const pings = async (n: number, from: string, to: string): Promise<boolean> => (await tryOn(n, ['exec', from, 'ping', '-c', '1', '-W', '1', to])).ok;

interface RouterStatus {
  peers: Array<{ host: string; state: string; address: string; path: string | null; pathReason?: string | null }>;
  networks: Array<{ wireId: number; tap: string; attached: boolean; multicast?: boolean; vxlan?: { device: string; vni: number; up: boolean } }>;
  sleeve: Record<string, string>;
}
const routerStatus = async (n: number): Promise<RouterStatus | null> => (JSON.parse(await weaveCli(n, ['status', '--json'])) as { router: RouterStatus | null }).router;

/** The last lines of host n's dockerd log that say something went wrong, for a failure's message. */
const dockerdTail = (n: number, lines: number): string => {
  try {
    return readFileSync(`${LOG_DIR}/${hostNs(n)}-dockerd.log`, 'utf8').split('\n').filter((l) => /level=(warning|error)/.test(l)).slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
};

/** A container per host on NET that answers broadcast pings; probes[n - 1] lives on host n. */
const probes = hosts.map((n) => ({ host: n, name: `probe${n}`, ip: '' }));

test('the hosts form one NATS cluster with one JetStream meta leader', async () => {
  const views = await Promise.all(hosts.map(natsView));
  expect(views.map((v) => v.server)).toEqual(hosts.map((n) => `weave-${hostName(n)}`));
  for (const v of views) expect(v.routes).toHaveLength(HOSTS - 1);
  const leaders = new Set(views.map((v) => v.jetstream.leader));
  expect(leaders.size).toBe(1);
  expect(views.map((v) => v.server)).toContain([...leaders][0]);
});

test('every router sees the other hosts as connected peers', async () => {
  for (const n of hosts) {
    const peers = await waitFor(
      async () => {
        const up = ((await routerStatus(n))?.peers ?? []).filter((p) => p.state === 'connected');
        return up.length === HOSTS - 1 ? up : null;
      },
      { what: `${hostName(n)}'s router to see ${HOSTS - 1} peers`, timeoutMs: 15_000, intervalMs: 500 },
    );
    expect(peers.map((p) => [p.host, p.address])).toEqual(hosts.filter((m) => m !== n).map((m) => [hostName(m), hostAddress(m)]));
  }
});

test(`a network created on host 1 appears on the others within 2 s; ${CONTAINERS} containers started at once on ${HOSTS} hosts get distinct addresses`, async () => {
  await on(1, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', SUBNET, NET]);
  const t0 = Date.now();
  for (const n of hosts.slice(1)) {
    await waitFor(async () => (await tryOn(n, ['network', 'inspect', NET])).ok, { what: `${NET} on ${hostName(n)}`, timeoutMs: 2000, intervalMs: 50 });
  }
  log(`${NET} on every host ${Date.now() - t0} ms after its creation on host 1`);

  const runOn = async (n: number, count: number): Promise<string[]> => {
    const queue = Array.from({ length: count }, (_, i) => `mt${n}-${i}`);
    const ips: string[] = [];
    // Several at once per host, so allocations on one host also race each other.
    const worker = async () => {
      for (let name = queue.shift(); name; name = queue.shift()) {
        await on(n, ['run', '-d', '--name', name, '--net', NET, 'weave-bbox:local', 'sleep', '1d']);
        ips.push(await ipOf(n, name));
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    return ips;
  };
  const t1 = Date.now();
  const perHost = await Promise.all(hosts.map((n, i) => runOn(n, Math.floor(CONTAINERS / HOSTS) + (i < CONTAINERS % HOSTS ? 1 : 0))));
  log(`${CONTAINERS} containers started in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
  const all = perHost.flat();
  expect(all).toHaveLength(CONTAINERS);
  expect(new Set(all).size).toBe(CONTAINERS);
  for (const ip of all) expect(ip).toMatch(/^10\.252\.7\.\d+$/);
  // Their work is done; the traffic tests need only a few, and the restart test a quick dockerd.
  await Promise.all(hosts.map(async (n) => on(n, ['rm', '-f', ...(await on(n, ['ps', '-aq', '--filter', 'name=^mt'])).split('\n').filter(Boolean)], 180_000)));
}, 300_000);

test('containers on different hosts are on one L2 segment: ARP, ping, TCP, UDP and broadcast', async () => {
  for (const p of probes) {
    // Broadcast pings are ignored by default; the probes answer them so a broadcast can be seen.
    await on(p.host, ['run', '-d', '--name', p.name, '--restart', 'always', '--net', NET, '--sysctl', 'net.ipv4.icmp_echo_ignore_broadcasts=0', 'weave-bbox:local', 'sleep', '1d']);
    p.ip = await ipOf(p.host, p.name);
  }
  for (const a of probes) {
    for (const b of probes.filter((x) => x !== a)) {
      expect({ from: a.name, to: b.name, ok: await pings(a.host, a.name, b.ip) }).toEqual({ from: a.name, to: b.name, ok: true });
    }
  }
  // ARP resolved across hosts, to the container's own MAC (the one Docker made up: plugin-api asks
  // Docker for MACs, for addresses that stick to a MAC of the container's own).
  const [p1, p2, p3] = probes as [(typeof probes)[0], (typeof probes)[0], (typeof probes)[0]];
  const mac2 = await on(2, ['exec', p2.name, 'cat', '/sys/class/net/eth0/address']);
  expect(mac2).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  expect(await on(1, ['exec', p1.name, 'ip', 'neigh', 'show', p2.ip])).toContain(mac2);

  // TCP both ways between every pair.
  for (const server of probes) {
    await on(server.host, ['exec', '-d', server.name, 'sh', '-c', `while true; do echo "hello from ${server.name}" | nc -l -p 7000; done`]);
    for (const client of probes.filter((x) => x !== server)) {
      const got = await waitFor(async () => (await outOf(client.host, ['exec', client.name, 'sh', '-c', `nc ${server.ip} 7000 </dev/null`])).trim() || null, {
        what: `TCP from ${client.name} to ${server.name}`,
        timeoutMs: 10_000,
      });
      expect(got).toBe(`hello from ${server.name}`);
    }
  }

  // UDP: datagrams from host 1 arrive on host 3 (node's dgram inside the containers' netns).
  const receiver = inContainerNet(3, p3.name, process.execPath, [
    '-e',
    `const s = require('node:dgram').createSocket('udp4'); s.on('message', (m, r) => { console.log(m + ' from ' + r.address); process.exit(0); }); s.bind(7001); setTimeout(() => process.exit(3), 15000);`,
  ]);
  const sender = inContainerNet(1, p1.name, process.execPath, [
    '-e',
    `const s = require('node:dgram').createSocket('udp4'); const t = setInterval(() => s.send('udp-hello', 7001, '${p3.ip}'), 100); setTimeout(() => (clearInterval(t), s.close()), 5000);`,
  ]);
  const [got] = await Promise.all([receiver, sender]);
  expect(got.stdout.trim()).toBe(`udp-hello from ${p1.ip}`);

  // A broadcast from host 1 reaches the probes on hosts 2 and 3.
  const out = await outOf(1, ['exec', p1.name, 'ping', '-c', '3', '-W', '2', '10.252.7.255']);
  // (The sender answers its own broadcast too.)
  const answered = new Set([...out.matchAll(/bytes from ([\d.]+)/g)].map((m) => m[1]).filter((ip) => ip !== p1.ip));
  expect(answered).toEqual(new Set([p2.ip, p3.ip]));
}, 120_000);

/** Host n's path to host m, as its router reports it. */
const pathTo = async (n: number, m: number): Promise<string | null> => (await routerStatus(n))?.peers.find((p) => p.host === hostName(m))?.path ?? null;
/** Packets the kernel's VXLAN device of NET sent on host n. */
const vxlanTx = async (n: number): Promise<number> => {
  const dev = (await routerStatus(n))!.networks.find((x) => x.vxlan)!.vxlan!.device;
  // netlink, not /sys: sysfs shows the namespace of whoever mounted it, not the one entered.
  const r = await inHost(n, 'ip', ['-j', '-s', 'link', 'show', 'dev', dev]);
  if (r.code !== 0) throw new Error(`${dev} on ${hostName(n)}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<{ stats64: { tx: { packets: number } } }>)[0]!.stats64.tx.packets;
};
/** Drops VXLAN between hosts a and b, both ways, as each sends it (`-D` to undo). */
const blockVxlan = async (op: '-I' | '-D', a: number, b: number) => {
  for (const [n, to] of [[a, b], [b, a]] as const) {
    const r = await inHost(n, 'iptables', [op, 'OUTPUT', '-p', 'udp', '--dport', String(DEFAULT_VXLAN_PORT), '-d', hostAddress(to), '-j', 'DROP']);
    if (r.code !== 0) throw new Error(`iptables ${op} on ${hostName(n)}: ${r.stderr}`);
  }
};

test('by default hosts carry the network over the kernel VXLAN; a blocked pair falls back to the sleeve within 5 s and returns when unblocked', async () => {
  const [p1, p2, p3] = probes as [(typeof probes)[0], (typeof probes)[0], (typeof probes)[0]];
  for (const n of hosts) {
    for (const m of hosts.filter((x) => x !== n)) await waitFor(async () => (await pathTo(n, m)) === 'fastpath' || null, { what: `${hostName(n)} → ${hostName(m)} on the fast path`, timeoutMs: 15_000 });
  }
  // The traffic really is the kernel's: its VXLAN counters move, the sleeve's stay.
  const [tx0, sleeve0] = [await vxlanTx(1), BigInt((await routerStatus(1))!.sleeve.framesToPeers ?? '0')];
  expect(await pings(1, p1.name, p3.ip)).toBe(true);
  expect(await vxlanTx(1)).toBeGreaterThan(tx0);
  expect(BigInt((await routerStatus(1))!.sleeve.framesToPeers ?? '0')).toBe(sleeve0);

  await blockVxlan('-I', 1, 3);
  try {
    const t0 = Date.now();
    for (const [n, m] of [[1, 3], [3, 1]] as const) await waitFor(async () => (await pathTo(n, m)) === 'sleeve' || null, { what: `${hostName(n)} → ${hostName(m)} back on the sleeve`, timeoutMs: 5_000, intervalMs: 200 });
    log(`hosts 1 and 3 fell back to the sleeve ${((Date.now() - t0) / 1000).toFixed(1)} s after VXLAN was blocked`);
    expect((await routerStatus(1))!.peers.find((p) => p.host === hostName(3))!.pathReason).toMatch(/VXLAN/);
    // The other pairs stay on the kernel.
    expect([await pathTo(1, 2), await pathTo(2, 3), await pathTo(3, 2)]).toEqual(['fastpath', 'fastpath', 'fastpath']);
    // And traffic keeps flowing: 1↔3 over the sleeve, the rest as before.
    await waitFor(async () => (await pings(1, p1.name, p3.ip)) || null, { what: 'host 1 to reach host 3 over the sleeve', timeoutMs: 10_000, intervalMs: 200 });
    expect(await pings(3, p3.name, p1.ip)).toBe(true);
    expect(await pings(2, p2.name, p3.ip)).toBe(true);
    expect(BigInt((await routerStatus(1))!.sleeve.framesToPeers ?? '0')).toBeGreaterThan(sleeve0);
  } finally {
    await blockVxlan('-D', 1, 3);
  }
  const t1 = Date.now();
  for (const [n, m] of [[1, 3], [3, 1]] as const) await waitFor(async () => (await pathTo(n, m)) === 'fastpath' || null, { what: `${hostName(n)} → ${hostName(m)} on the fast path again`, timeoutMs: 10_000, intervalMs: 200 });
  log(`hosts 1 and 3 back on the fast path ${((Date.now() - t1) / 1000).toFixed(1)} s after unblocking`);
  await waitFor(async () => (await pings(1, p1.name, p3.ip)) || null, { what: 'host 1 to reach host 3 over VXLAN again', timeoutMs: 10_000, intervalMs: 200 });
}, 120_000);

/** Sets (or, with null, removes) the underlay route MTU between hosts a and b, on both. */
const underlayMtu = async (a: number, b: number, mtu: number | null) => {
  for (const [n, to] of [[a, b], [b, a]] as const) {
    const args = mtu === null ? ['route', 'del', `${hostAddress(to)}/32`] : ['route', 'replace', `${hostAddress(to)}/32`, 'dev', 'eth0', 'mtu', String(mtu)];
    const r = await inHost(n, 'ip', args);
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')} on ${hostName(n)}: ${r.stderr}`);
  }
};

/** The path MTU container `name` on host n has learnt for `to` (from ICMP), or null. */
const learntMtu = async (n: number, name: string, to: string): Promise<number | null> => {
  const r = await inContainerNet(n, name, 'ip', ['route', 'get', to]);
  const m = /\bmtu (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : null;
};

/** Sends one 1400-byte UDP datagram from container `name` (Linux sets DF on it: PMTU discovery). */
const bigDatagram = (n: number, name: string, to: string) =>
  inContainerNet(n, name, process.execPath, ['-e', `const s = require('node:dgram').createSocket('udp4'); s.send(Buffer.alloc(1400), 7009, '${to}', () => s.close());`]);

test('a packet too big for a smaller underlay gets "fragmentation needed" back, on the fast path and on the sleeve', async () => {
  const [p1, , p3] = probes as [(typeof probes)[0], (typeof probes)[0], (typeof probes)[0]];
  await underlayMtu(1, 3, 1400);
  try {
    // Kernel VXLAN: a bridged packet that does not fit its route gets ICMP from the kernel (50 B overhead).
    await waitFor(async () => (await pathTo(1, 3)) === 'fastpath' || null, { what: 'host 1 to host 3 on the fast path', timeoutMs: 15_000 });
    await waitFor(async () => (await bigDatagram(1, p1.name, p3.ip), (await learntMtu(1, p1.name, p3.ip)) === 1350 || null), { what: 'probe1 to learn MTU 1350 towards probe3 over VXLAN', timeoutMs: 10_000, intervalMs: 500 });
    await inContainerNet(1, p1.name, 'ip', ['route', 'flush', 'cache']);
    // The sleeve: its path MTU to host 3 follows the route (1400 - 64), and it answers with ICMP itself.
    await blockVxlan('-I', 1, 3);
    try {
      await waitFor(async () => ((await routerStatus(1))!.peers.find((p) => p.host === hostName(3)) as { path: string; mtu?: number } | undefined)?.mtu === 1336 || null, {
        what: "host 1's router to see a 1336-byte path to host 3 on the sleeve",
        timeoutMs: 20_000,
        intervalMs: 500,
      });
      await waitFor(async () => (await bigDatagram(1, p1.name, p3.ip), (await learntMtu(1, p1.name, p3.ip)) === 1336 || null), { what: 'probe1 to learn MTU 1336 towards probe3 over the sleeve', timeoutMs: 10_000, intervalMs: 500 });
      log('fragmentation needed: MTU 1350 learnt over VXLAN, 1336 over the sleeve');
    } finally {
      await blockVxlan('-D', 1, 3);
    }
  } finally {
    await underlayMtu(1, 3, null);
    await inContainerNet(1, p1.name, 'ip', ['route', 'flush', 'cache']);
  }
  // Traffic flows again once the underlay is whole (and the pair is back on the fast path).
  await waitFor(async () => (await pings(1, p1.name, p3.ip)) || null, { what: 'probe1 to reach probe3 again', timeoutMs: 15_000, intervalMs: 200 });
}, 120_000);

const GROUP = '239.1.2.3';
const GROUP_PORT = 7010;
interface Member {
  host: number;
  name: string;
  ip: string;
}
/**
 * One round of multicast: `from` sends to GROUP every 100 ms for 4 s while each of `to` joins the
 * group (node's dgram inside the container's netns) and listens for 6 s; which of them heard it.
 */
const multicastRound = async (from: Member, to: readonly Member[]): Promise<Record<string, boolean>> => {
  const listen = (m: Member) =>
    inContainerNet(m.host, m.name, process.execPath, [
      '-e',
      `const s = require('node:dgram').createSocket({ type: 'udp4', reuseAddr: true }); s.on('message', (m) => { console.log(String(m)); process.exit(0); }); s.bind(${GROUP_PORT}, () => s.addMembership('${GROUP}', '${m.ip}')); setTimeout(() => process.exit(3), 6000);`,
    ]);
  const send = inContainerNet(from.host, from.name, process.execPath, [
    '-e',
    `const s = require('node:dgram').createSocket('udp4'); s.bind(() => { s.setMulticastInterface('${from.ip}'); const t = setInterval(() => s.send('multicast from ${from.name}', ${GROUP_PORT}, '${GROUP}'), 100); setTimeout(() => (clearInterval(t), s.close()), 4000); });`,
  ]);
  const [heard, sent] = await Promise.all([Promise.all(to.map(listen)), send]);
  if (sent.code !== 0) throw new Error(`the sender in ${from.name} failed: ${sent.stderr}`);
  return Object.fromEntries(to.map((m, i) => [m.name, heard[i]!.code === 0 && heard[i]!.stdout.trim() === `multicast from ${from.name}`]));
};

test('multicast crosses hosts on a network made with -o weave.multicast=true, on the fast path and the sleeve; elsewhere it stays on its host', async () => {
  const NET_MC = 'weave:multicast';
  const members: Member[] = hosts.map((n) => ({ host: n, name: `mcast${n}`, ip: '' }));
  /** A second container on NET on host 1: what stays on a host still reaches it. */
  const local: Member = { host: 1, name: 'mcastlocal1', ip: '' };
  const [p1, p2, p3] = probes as [Member, Member, Member];
  const dropped = async (n: number) => BigInt((await routerStatus(n))!.sleeve.dropMulticastOff ?? '0');
  try {
    await on(1, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', '10.252.10.0/24', '-o', 'weave.multicast=true', NET_MC]);
    for (const n of hosts.slice(1)) await waitFor(async () => (await tryOn(n, ['network', 'inspect', NET_MC])).ok, { what: `${NET_MC} on ${hostName(n)}`, timeoutMs: 5000 });
    for (const m of members) {
      await on(m.host, ['run', '-d', '--name', m.name, '--net', NET_MC, 'weave-bbox:local', 'sleep', '1d']);
      m.ip = await ipOf(m.host, m.name, NET_MC);
    }
    await on(1, ['run', '-d', '--name', local.name, '--net', NET, 'weave-bbox:local', 'sleep', '1d']);
    local.ip = await ipOf(1, local.name);
    for (const n of hosts) {
      await waitFor(async () => (await routerStatus(n))?.networks.some((x) => x.multicast === true && x.vxlan?.up) || null, { what: `${hostName(n)}'s router to carry multicast on ${NET_MC}`, timeoutMs: 10_000 });
    }
    const [m1, m2, m3] = members as [Member, Member, Member];
    /** Both networks once: the option's network carries the group to hosts 2 and 3, the default one to no other host. */
    const rounds = async (how: string) => {
      expect({ how, heard: await multicastRound(m1, [m2, m3]) }).toEqual({ how, heard: { [m2.name]: true, [m3.name]: true } });
      const before = await dropped(1);
      expect({ how, heard: await multicastRound(p1, [p2, p3, local]) }).toEqual({ how, heard: { [p2.name]: false, [p3.name]: false, [local.name]: true } });
      // Host 1's sleeve saw the group's frames on its TAP and kept them (the kernel's VXLAN, its ebtables guard).
      expect(await dropped(1)).toBeGreaterThan(before);
    };
    await rounds('every pair on the fast path');

    await blockVxlan('-I', 1, 3);
    try {
      for (const [n, m] of [[1, 3], [3, 1]] as const) await waitFor(async () => (await pathTo(n, m)) === 'sleeve' || null, { what: `${hostName(n)} → ${hostName(m)} on the sleeve`, timeoutMs: 10_000, intervalMs: 200 });
      await rounds('hosts 1 and 3 on the sleeve');
    } finally {
      await blockVxlan('-D', 1, 3);
    }
    for (const [n, m] of [[1, 3], [3, 1]] as const) await waitFor(async () => (await pathTo(n, m)) === 'fastpath' || null, { what: `${hostName(n)} → ${hostName(m)} on the fast path again`, timeoutMs: 10_000, intervalMs: 200 });
  } finally {
    await Promise.all([...members, local].map((m) => tryOn(m.host, ['rm', '-f', m.name])));
    await tryOn(1, ['network', 'rm', NET_MC]);
  }
  for (const n of hosts) await waitFor(async () => !(await tryOn(n, ['network', 'inspect', NET_MC])).ok || null, { what: `${NET_MC} gone from ${hostName(n)}`, timeoutMs: 10_000 });
}, 180_000);

test('weave ps and weave networks on one host show the whole mesh', async () => {
  const ps = JSON.parse(await weaveCli(1, ['ps', '--json'])) as Array<{ host: string; endpoints: Array<{ address: string | null }> | null }>;
  expect(ps.map((r) => r.host).sort()).toEqual(hosts.map(hostName));
  for (const p of probes) {
    const there = ps.find((r) => r.host === hostName(p.host))!.endpoints!.map((e) => e.address);
    expect(there).toContain(`${p.ip}/24`);
  }
  const table = await weaveCli(2, ['networks']);
  expect(table).toMatch(new RegExp(`^${SUBNET.replace(/\./g, '\\.')}\\s+0x[0-9a-f]{8}\\s+\\d+\\s+host1:\\d+ host2:\\d+ host3:\\d+$`, 'm'));
});

test('a second network is a separate segment: its containers reach each other and nothing of the first', async () => {
  await on(2, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', SUBNET2, NET2]);
  for (const n of [1, 3]) await waitFor(async () => (await tryOn(n, ['network', 'inspect', NET2])).ok, { what: `${NET2} on ${hostName(n)}`, timeoutMs: 5000 });
  await on(1, ['run', '-d', '--name', 'other1', '--net', NET2, 'weave-bbox:local', 'sleep', '1d']);
  await on(3, ['run', '-d', '--name', 'other3', '--net', NET2, 'weave-bbox:local', 'sleep', '1d']);
  const other3 = await ipOf(3, 'other3', NET2);
  expect(await pings(1, 'other1', other3)).toBe(true);
  const [p1, p2, p3] = probes as [(typeof probes)[0], (typeof probes)[0], (typeof probes)[0]];
  // Neither across hosts (different wire ids) nor through a host's routing (isolation rules).
  expect(await pings(1, 'other1', p1.ip)).toBe(false);
  expect(await pings(1, 'other1', p2.ip)).toBe(false);
  expect(await pings(3, 'other3', p3.ip)).toBe(false);
  expect(await pings(2, p2.name, other3)).toBe(false);
  // Each host's router carries both networks, each on its own TAP; the second one has no VXLAN id.
  for (const n of hosts) {
    const s = await waitFor(async () => ((await routerStatus(n))?.networks.filter((x) => x.attached).length === 2 ? routerStatus(n) : null), {
      what: `both networks on ${hostName(n)}'s sleeve`,
      timeoutMs: 10_000,
    });
    expect(new Set(s!.networks.map((x) => x.tap)).size).toBe(2);
    expect(s!.networks.filter((x) => x.vxlan).length).toBe(1);
  }
  await on(1, ['rm', '-f', 'other1']);
  await on(3, ['rm', '-f', 'other3']);
  await on(2, ['network', 'rm', NET2]);
}, 120_000);

test('DNS: containers resolve names and aliases of containers on other hosts; other names go to the host resolver; a removed container stops resolving', async () => {
  const DNS_NET = 'weave:dnstest';
  const DNS_OTHER = 'weave:dnsother';
  /** The IPv4 addresses busybox nslookup printed for `name` in `container` (the server's own line left out). */
  const lookup = async (n: number, container: string, name: string): Promise<string[]> => {
    const r = await tryOn(n, ['exec', container, 'nslookup', '-type=a', name]);
    const answer = (r.ok ? r.out : '').split(/\n\s*\n/).slice(1).join('\n');
    return [...answer.matchAll(/^Address:?\s+(\d+\.\d+\.\d+\.\d+)\s*$/gm)].map((m) => m[1]!);
  };
  const resolves = (n: number, container: string, name: string, ip: string) =>
    waitFor(async () => ((await lookup(n, container, name)).includes(ip) ? true : null), { what: `${name} to resolve to ${ip} in ${container} on ${hostName(n)}`, timeoutMs: 15_000, intervalMs: 300 });
  await withResolver(async (resolver) => {
    await on(1, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', '10.252.12.0/24', DNS_NET]);
    await on(1, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', '10.252.13.0/24', DNS_OTHER]);
    for (const n of [2, 3]) {
      for (const net of [DNS_NET, DNS_OTHER]) await waitFor(async () => (await tryOn(n, ['network', 'inspect', net])).ok, { what: `${net} on ${hostName(n)}`, timeoutMs: 5000 });
    }
    try {
      await on(2, ['run', '-d', '--name', 'dweb', '--network-alias', 'dalias', '--net', DNS_NET, 'weave-bbox:local', 'sleep', '1d']);
      await on(3, ['run', '-d', '--name', 'dclient', '--net', DNS_NET, 'weave-bbox:local', 'sleep', '1d']);
      await on(3, ['run', '-d', '--name', 'doutsider', '--net', DNS_OTHER, 'weave-bbox:local', 'sleep', '1d']);
      const web = await ipOf(2, 'dweb', DNS_NET);
      const t0 = Date.now();
      await resolves(3, 'dclient', 'dweb', web);
      log(`dweb (host 2) resolved on host 3 ${Date.now() - t0} ms after its start`);
      await resolves(3, 'dclient', 'dalias', web);
      await resolves(3, 'dclient', 'dweb.weave.local', web);
      expect(await pings(3, 'dclient', 'dweb')).toBe(true);

      // Other names reach the host's resolver, asked by the host (weave DNS), not the container.
      expect(await lookup(3, 'dclient', 'www.upstream.test')).toEqual([UPSTREAM_ANSWER]);
      const asked = resolver.queries().filter((q) => q.name === 'www.upstream.test');
      expect(asked.length).toBeGreaterThan(0);
      expect(new Set(asked.map((q) => q.from))).toEqual(new Set([hostAddress(3)]));
      // The mesh's names never do.
      expect(resolver.queries().filter((q) => q.name.startsWith('dweb') || q.name.startsWith('dalias'))).toEqual([]);
      // Another network's container does not learn the name (to it, an unknown one, passed on).
      expect(await lookup(3, 'doutsider', 'dweb')).toEqual([]);

      await on(2, ['rm', '-f', 'dweb']);
      const t1 = Date.now();
      await waitFor(async () => ((await lookup(3, 'dclient', 'dweb')).length === 0 ? true : null), { what: 'dweb to stop resolving after its removal', timeoutMs: 15_000, intervalMs: 300 });
      log(`dweb stopped resolving ${Date.now() - t1} ms after its removal`);
    } finally {
      for (const [n, c] of [[2, 'dweb'], [3, 'dclient'], [3, 'doutsider']] as const) await tryOn(n, ['rm', '-f', c]);
      await tryOn(1, ['network', 'rm', DNS_NET]);
      await tryOn(1, ['network', 'rm', DNS_OTHER]);
    }
  });
}, 120_000);

test('datagrams from a non-peer, garbage or truncated, are dropped and counted; the router carries on', async () => {
  const before = BigInt((await routerStatus(1))!.sleeve.dropUnknownPeer ?? '0');
  await withIntruder((intruder) => sendGarbage(intruder, hostAddress(1), 6784, 50));
  await waitFor(async () => BigInt((await routerStatus(1))!.sleeve.dropUnknownPeer ?? '0') - before >= 50n, { what: "host 1's router to count 50 datagrams from a non-peer", timeoutMs: 10_000 });
  const [p1, p2] = probes as [(typeof probes)[0], (typeof probes)[0]];
  expect(await pings(1, p1.name, p2.ip)).toBe(true);
}, 60_000);

test('a host whose dockerd restarts (and with it its stack) rejoins, and its --restart always container comes back by itself', async () => {
  const [p1, , p3] = probes as [(typeof probes)[0], (typeof probes)[0], (typeof probes)[0]];
  const before = p3.ip;
  const t0 = Date.now();
  await restartHost(3, { hosts: HOSTS, log });
  // dockerd restarts probe3 and weave's stack together; the plugin must answer in time for it.
  await waitFor(async () => (await outOf(3, ['inspect', '-f', '{{.State.Running}}', p3.name])).trim() === 'true' || null, {
    what: `${p3.name} running again on ${hostName(3)} (dockerd: ${dockerdTail(3, 12)})`,
    timeoutMs: 120_000,
    intervalMs: 500,
  });
  p3.ip = await ipOf(3, p3.name);
  log(`host 3 back with ${p3.name} running by itself ${((Date.now() - t0) / 1000).toFixed(1)} s after its dockerd was stopped, address ${p3.ip === before ? 'kept' : `${before} -> ${p3.ip}`}`);
  await waitFor(async () => (await pings(1, p1.name, p3.ip)) || null, { what: `${p1.name} on host 1 to reach ${p3.name} again`, timeoutMs: 30_000, intervalMs: 500 });
  expect(await pings(3, p3.name, p1.ip)).toBe(true);
  const peers = (await routerStatus(1))!.peers.filter((p) => p.state === 'connected').map((p) => p.host);
  expect(peers).toContain(hostName(3));
}, 360_000);

test('mesh down leaves nothing behind', async () => {
  await meshDown({ log });
  expect(presentHosts()).toEqual([]);
  expect(existsSync(`/run/netns/${UNDERLAY_NS}`)).toBe(false);
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  expect(netns.filter((n) => /^wvh\d+$/.test(n) || n === UNDERLAY_NS || n === INTRUDER_NS)).toEqual([]);
}, 180_000);
