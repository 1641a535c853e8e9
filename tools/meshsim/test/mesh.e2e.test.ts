import { existsSync, readdirSync } from 'node:fs';
import { docker, dockerResult } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { hostAddress, hostDocker, hostName, meshDown, meshUp, natsView, presentHosts, UNDERLAY_NS, weaveCli } from '../src/mesh';

/**
 * Three simulated Docker hosts (own netns, own dockerd, own /run/docker/plugins) running weave's
 * stack with WEAVE_PEERS: their nats-servers form one cluster, the routers find each other, a
 * network created on one host appears on the others, and the IPAM is mesh-wide.
 * Container-to-container traffic across hosts waits for the router's data path.
 */
const HOSTS = 3;
const PER_HOST = 10;
const SUBNET = '10.252.7.0/24';
const NET = 'weave:meshtest';
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
        const s = JSON.parse(await weaveCli(n, ['status', '--json'])) as { router: { peers: Array<{ host: string; state: string; address: string }> } | null };
        const up = (s.router?.peers ?? []).filter((p) => p.state === 'connected');
        return up.length === HOSTS - 1 ? up : null;
      },
      { what: `${hostName(n)}'s router to see ${HOSTS - 1} peers`, timeoutMs: 15_000, intervalMs: 500 },
    );
    expect(peers.map((p) => [p.host, p.address])).toEqual(hosts.filter((m) => m !== n).map((m) => [hostName(m), hostAddress(m)]));
  }
});

test(`a network created on host 1 appears on the others within 2 s; ${HOSTS * PER_HOST} containers on ${HOSTS} hosts get distinct addresses`, async () => {
  await docker(['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', SUBNET, NET], { host: hostDocker(1) });
  const t0 = Date.now();
  for (const n of hosts.slice(1)) {
    const there = () => dockerResult(['network', 'inspect', NET], { host: hostDocker(n) }).then((r) => r.ok);
    await waitFor(there, { what: `${NET} on ${hostName(n)}`, timeoutMs: 2000, intervalMs: 50 });
  }
  log(`${NET} on every host ${Date.now() - t0} ms after its creation on host 1`);

  const runOn = async (n: number): Promise<string[]> => {
    const ips: string[] = [];
    // A few at once per host, so allocations on one host also race each other.
    const queue = Array.from({ length: PER_HOST }, (_, i) => `mt${n}-${i}`);
    const worker = async () => {
      for (let name = queue.shift(); name; name = queue.shift()) {
        await docker(['run', '-d', '--name', name, '--net', NET, 'weave-bbox:local', 'sleep', '1d'], { host: hostDocker(n) });
        ips.push(await docker(['inspect', '-f', `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, name], { host: hostDocker(n) }));
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    return ips;
  };
  const perHost = await Promise.all(hosts.map(runOn));
  const all = perHost.flat();

  expect(all).toHaveLength(HOSTS * PER_HOST);
  expect(new Set(all).size).toBe(all.length);
  for (const ip of all) expect(ip).toMatch(/^10\.252\.7\.\d+$/);
});

test('mesh down leaves nothing behind', async () => {
  await meshDown({ log });
  expect(presentHosts()).toEqual([]);
  expect(existsSync(`/run/netns/${UNDERLAY_NS}`)).toBe(false);
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  expect(netns.filter((n) => /^wvh\d+$|^wvunder$/.test(n))).toEqual([]);
});
