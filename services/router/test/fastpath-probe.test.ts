import { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { waitFor } from '@weave/testing';
import { PROBE_DEVICE, PROBE_VNI } from '../src/fastpath-probe';
import { peerIdOf } from '../src/peer-id';
import { NetnsLab } from './netns-lab';

/**
 * Three hosts, each a namespace on one underlay, each running the probe in a child process (a
 * socket cannot enter a namespace). host3 has IPv6 switched off by sysctl, as some hosts do.
 * With the default timing (a request a second, down after 3 s of silence) a blocked VXLAN port
 * must show within 5 s, only for the pair it cuts, and a healed one as fast.
 */
const lab = new NetnsLab('pr');
const root = join(__dirname, '..', '..', '..');
const hosts = ['host1', 'host2', 'host3'] as const;
type Host = (typeof hosts)[number];
const address: Record<Host, string> = { host1: '10.254.202.1', host2: '10.254.202.2', host3: '10.254.202.3' };
const ns = {} as Record<Host, string>;
const probes = {} as Record<Host, ProbeHost>;

interface Change {
  host: string;
  up: boolean;
  reason: string;
  at: number;
}

/** The probe child of one host, and what it reported. */
class ProbeHost {
  readonly changes: Change[] = [];
  ready: { unavailable: string | null } | null = null;
  peersSet = 0;
  readonly child: ChildProcess;

  constructor(host: Host) {
    const opts = { localAddress: address[host], localPeerId: peerIdOf(host).toString(), vxlanPort: 4789 };
    this.child = lab.spawn(ns[host], [process.execPath, '--import', 'tsx', join(__dirname, 'fastpath-probe-host.ts'), JSON.stringify(opts)], root, (line) => {
      const m = JSON.parse(line);
      if (m.ready) this.ready = m;
      if (m.change) this.changes.push(m.change);
      if (m.peersSet) this.peersSet++;
      if (m.error) throw new Error(`${host}: ${m.error}`);
    });
  }

  up(peer: Host): boolean {
    return this.changes.filter((c) => c.host === peer).at(-1)?.up === true;
  }

  async setPeers(peers: Host[]): Promise<void> {
    const before = this.peersSet;
    this.child.stdin!.write(JSON.stringify({ peers: peers.map((h) => ({ host: h, address: address[h], peerId: peerIdOf(h).toString() })) }) + '\n');
    await waitFor(() => this.peersSet > before, { what: 'the probe to take its peers' });
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin!.end();
    await exited;
  }
}

const pairs = [
  ['host1', 'host2'],
  ['host1', 'host3'],
  ['host2', 'host3'],
] as const;
const pairUp = (a: Host, b: Host) => probes[a].up(b) && probes[b].up(a);

beforeAll(async () => {
  for (const h of hosts) ns[h] = await lab.netns(h, { ipv6: h !== 'host3' });
  await lab.underlay(hosts.map((h) => ({ ns: ns[h], address: address[h] })));
  // A leftover from a crashed run, with another VNI: the probe must replace it.
  await lab.sh(ns.host1, `ip link add ${PROBE_DEVICE} type vxlan id 5 local ${address.host1} dstport 4789`);
  for (const h of hosts) probes[h] = new ProbeHost(h);
  await waitFor(() => hosts.every((h) => probes[h].ready), { what: 'every probe to start', timeoutMs: 30_000 });
}, 60_000);

afterAll(() => lab.cleanup(), 60_000);

it('starts on every host, host3 without IPv6 by default too', async () => {
  expect(hosts.map((h) => probes[h].ready!.unavailable)).toEqual([null, null, null]);
  const [dev] = JSON.parse(await lab.sh(ns.host1, `ip -d -j link show dev ${PROBE_DEVICE}`));
  expect(dev.linkinfo.info_data.id).toBe(PROBE_VNI);
});

it('sees every peer up over VXLAN', async () => {
  await Promise.all(hosts.map((h) => probes[h].setPeers(hosts.filter((p) => p !== h))));
  await waitFor(() => pairs.every(([a, b]) => pairUp(a, b)), { what: 'every pair up', timeoutMs: 10_000 });
  expect(probes.host1.changes.find((c) => c.host === 'host2')).toMatchObject({ up: true, reason: 'host2 answers over VXLAN (UDP 4789)' });
}, 20_000);

it('puts exactly the pair whose VXLAN is blocked down within 5 s, and back up within 5 s of the heal', async () => {
  const rule = `INPUT -s ${address.host1} -p udp --dport 4789 -j DROP`;
  const seen = Object.fromEntries(hosts.map((h) => [h, probes[h].changes.length]));
  const blocked = Date.now();
  await lab.sh(ns.host2, `iptables -I ${rule}`);
  await waitFor(() => !probes.host1.up('host2') && !probes.host2.up('host1'), { what: 'host1 and host2 to see each other down', timeoutMs: 8_000 });
  expect(Date.now() - blocked).toBeLessThan(5_000);
  expect(probes.host1.changes.at(-1)).toMatchObject({
    host: 'host2',
    up: false,
    reason: `no VXLAN reply from host2 (${address.host2}) for 3 s: its UDP port 4789 may be blocked`,
  });

  const healed = Date.now();
  await lab.sh(ns.host2, `iptables -D ${rule}`);
  await waitFor(() => pairUp('host1', 'host2'), { what: 'host1 and host2 up again', timeoutMs: 8_000 });
  expect(Date.now() - healed).toBeLessThan(5_000);
  // The pairs with host3 never noticed.
  const since = (h: Host) => probes[h].changes.slice(seen[h]).map((c) => `${h} sees ${c.host} ${c.up ? 'up' : 'down'}`);
  expect(hosts.flatMap(since)).toEqual(['host1 sees host2 down', 'host1 sees host2 up', 'host2 sees host1 down', 'host2 sees host1 up']);
}, 30_000);

it('forgets a removed peer, and removes its device when stopped', async () => {
  await probes.host1.setPeers(['host3']);
  const entries = await lab.sh(ns.host1, `bridge fdb show dev ${PROBE_DEVICE}; ip -6 neigh show dev ${PROBE_DEVICE}`);
  expect(entries).not.toContain(address.host2);
  expect(entries.match(/PERMANENT/g)).toHaveLength(1);
  await Promise.all(hosts.map((h) => probes[h].stop()));
  for (const h of hosts) expect(JSON.parse(await lab.sh(ns[h], 'ip -j link show type vxlan'))).toEqual([]);
}, 20_000);
