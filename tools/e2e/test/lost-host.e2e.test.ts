import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { kvKeys, openBucket, rpcClient, subscribeEvents } from '@weave/bus';
import { Buckets, DnsRecord, dnsHostPrefix, EventEnvelope, ipamRpc } from '@weave/contracts';
import { containerIp, docker } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { DockerScope, dockerEndpoints, E2E_ENV, ipamLeases, PeerService, ProcessStack, weaveLinkDetails } from '../src';

/**
 * A host lost for good, and back: this host's ipam stops (its host as the mesh sees it is gone)
 * for longer than its lease, a second ipam (another WEAVE_HOST on the same nats-server) reclaims
 * it and gives two of its containers' addresses to leases of its own, one of them a container's
 * own --ip. When this host's ipam comes back it is fenced and registers again; its containers
 * must not keep addresses that are live elsewhere: netwire takes their endpoints off the network,
 * plugin-api reconnects the one with a dynamic address (it gets a fresh one) and leaves the --ip
 * one disconnected, saying so (event, log, `weave status`). The third container, whose address
 * nobody took, keeps it. Afterwards Docker, ipam's leases and netwire agree, and nothing leaks.
 *
 * The machine's dockerd runs the containers (as the other single-host suites do); the lease is
 * seconds long, and reconciliation's interval an hour, so what moves the containers is ipam's
 * events, not a periodic pass.
 */
const SUBNET = '10.251.70.0/24';
const FIXED_IP = '10.251.70.50';
const ENV = { ...E2E_ENV, WEAVE_IPAM_RENEW_MS: '1000', WEAVE_IPAM_HOST_LEASE_MS: '6000', WEAVE_RECONCILE_INTERVAL_MS: '3600000' };
const root = join(__dirname, '..', '..', '..');

let stack: ProcessStack;
let peer: PeerService;
const scope = new DockerScope();
const events: EventEnvelope[] = [];

beforeAll(async () => {
  stack = await new ProcessStack(ENV).start();
  peer = new PeerService(stack, 'ipam', `${stack.host}-b`, ENV);
  subscribeEvents(stack.nc, (e) => events.push(e), () => undefined);
}, 120_000);

afterAll(async () => {
  await scope.cleanup();
  await peer?.stop();
  await stack?.stop();
}, 120_000);

const networksOf = async (c: string): Promise<string[]> => Object.keys(JSON.parse(await docker(['inspect', '-f', '{{json .NetworkSettings.Networks}}', c])) as object);
const kinds = (kind: string) => events.filter((e) => e.kind === kind);

test('a returning host moves its containers off the addresses another host took meanwhile, and leaves a taken --ip disconnected', async () => {
  const t0 = Date.now();
  const net = await scope.network(stack.plugin, ['--subnet', SUBNET]);
  const [moved, kept, fixed] = [await scope.run([`--net=${net}`]), await scope.run([`--net=${net}`]), await scope.run([`--net=${net}`, '--ip', FIXED_IP])];
  const [oldIp, keptIp] = [await containerIp(moved, net), await containerIp(kept, net)];
  expect(await containerIp(fixed, net)).toBe(FIXED_IP);
  await waitFor(async () => (await dnsAddresses()).length === 3, { what: 'the three names in weave-dns', timeoutMs: 10_000 });

  // The second host holds the pool too, as a host with a container on the network would.
  await peer.start();
  const other = rpcClient(stack.nc, peer.host, ipamRpc);
  const { poolId } = await other.requestPool({ addressSpace: 'weave-local', pool: SUBNET, subPool: null, v6: false, options: {} });

  // This host is gone: its ipam renews no more. The other reclaims it after the lease.
  await stack.kill('ipam');
  const goneAt = Date.now();
  await waitFor(async () => (await other.status({})).hosts.some((h) => h.host === stack.host && h.state === 'reclaimed' && h.done), {
    what: `${peer.host} to reclaim ${stack.host}`,
    timeoutMs: 60_000,
    intervalMs: 250,
  });
  const reclaimedAfterMs = Date.now() - goneAt;
  // Its names go with its addresses (its own plugin-api, still running, sees the reclaim: the
  // other host has none here to do it).
  await waitFor(async () => (await dnsAddresses()).length === 0, { what: `${stack.host}'s names out of weave-dns`, timeoutMs: 10_000, intervalMs: 250 });
  // Meanwhile two of its containers' addresses go to the other host.
  await other.requestAddress({ poolId, address: oldIp, kind: 'endpoint' });
  await other.requestAddress({ poolId, address: FIXED_IP, kind: 'endpoint' });

  const backAt = Date.now();
  await stack.startService('ipam');
  await waitFor(async () => {
    const ip = await containerIp(moved, net).catch(() => '');
    return ip !== '' && ip !== oldIp && !(await networksOf(fixed)).includes(net);
  }, { what: `${moved} on a fresh address and ${fixed} off ${net}`, timeoutMs: 60_000, intervalMs: 250 });
  const movedAfterMs = Date.now() - backAt;
  const newIp = await containerIp(moved, net);

  // Docker: the moved container on a fresh address of the subnet, the kept one as it was, the --ip one running, off the network.
  expect(newIp).toMatch(/^10\.251\.70\./);
  expect(newIp).not.toBe(keptIp);
  expect(await containerIp(kept, net)).toBe(keptIp);
  expect(await docker(['inspect', '-f', '{{.State.Running}}', fixed])).toBe('true');
  const { networkId, endpoints } = await dockerEndpoints(net);
  expect(endpoints.map((e) => e.ipv4).sort()).toEqual([keptIp, newIp].sort());
  // weave DNS: back under the new epoch, with the moved container's fresh address, the --ip one's gone.
  await waitFor(async () => JSON.stringify(await dnsAddresses()) === JSON.stringify([keptIp, newIp].sort()), { what: 'the names back in weave-dns', timeoutMs: 10_000, intervalMs: 250 });

  // ipam: each address leased once; the taken ones by the other host only; this host's endpoint
  // leases exactly Docker's endpoints (the gateway stays with the network).
  const leases = await ipamLeases(stack.nc, SUBNET);
  expect(leases.filter((l) => l.address === oldIp || l.address === FIXED_IP).map((l) => l.host)).toEqual([peer.host, peer.host]);
  expect(leases.filter((l) => l.host === stack.host && l.kind === 'endpoint').map((l) => l.address).sort()).toEqual([keptIp, newIp].sort());
  expect(new Set(leases.map((l) => l.address)).size).toBe(leases.length);

  // netwire: the same endpoints, none left off its network, and their veths on the bridge only.
  const nw = await stack.netwire.status({});
  expect(nw.endpoints.map((e) => e.endpointId).sort()).toEqual(endpoints.map((e) => e.endpointId).sort());
  expect(nw.endpoints.filter((e) => e.isolated)).toEqual([]);
  const veths = weaveLinkDetails().filter((l) => l.owner === stack.host && l.kind === 'veth' && l.name.startsWith('wvh'));
  expect(veths.map((l) => l.name).sort()).toEqual(nw.endpoints.map((e) => e.hostVeth).sort());
  expect(await docker(['exec', kept, 'ping', '-c', '1', '-W', '2', newIp])).toMatch(/1 packets received/);

  // What was said: fenced and back with two lost, two endpoints taken off the network, one
  // container reconnected and one left disconnected, with what to do.
  expect(kinds('host.fenced').map((e) => e.host)).toEqual([stack.host]);
  expect(kinds('host.rejoined').flatMap((e) => (e.data as { lost: Array<{ address: string }> }).lost.map((l) => l.address)).sort()).toEqual([oldIp, FIXED_IP].sort());
  expect(kinds('endpoint.isolated').map((e) => (e.data as { address: string; takenBy: string }).address).sort()).toEqual([oldIp, FIXED_IP].sort());
  const readdressed = kinds('container.readdressed').map((e) => e.data as { container: string; outcome: string; newAddress: string | null; networkId: string });
  expect(readdressed).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ container: moved, outcome: 'reconnected', newAddress: newIp, networkId }),
      expect.objectContaining({ container: fixed, outcome: 'disconnected', newAddress: null, networkId }),
    ]),
  );
  expect(readdressed).toHaveLength(2);
  const status = await weaveStatus();
  expect(status).toContain(`problem: container ${fixed} is disconnected from ${net}: its --ip ${FIXED_IP} is leased by ${peer.host}`);

  // Asked again, nothing moves: the open record is the --ip container's, until it is gone.
  const again = await stack.pluginApi.reconcile({});
  expect(again.readdress).toEqual({ displaced: 0, isolated: 0, reconnected: 0, disconnected: 0, pending: 1 });
  expect(await containerIp(moved, net)).toBe(newIp);
  await scope.removeContainer(fixed);
  expect((await stack.pluginApi.reconcile({})).readdress?.pending).toBe(0);
  expect((await stack.pluginApi.status({})).readdress).toEqual([]);
  expect(await weaveStatus()).not.toContain('problem: container');

  // Everything goes: this host's containers and network, then the other host's leases and its
  // reference; nothing of the pool is left in ipam.
  await scope.removeContainer(moved);
  await scope.removeContainer(kept);
  await scope.removeNetwork(net);
  for (const address of [oldIp, FIXED_IP]) await other.releaseAddress({ poolId, address });
  await other.releasePool({ poolId });
  expect(await ipamLeases(stack.nc, SUBNET)).toEqual([]);
  expect((await stack.ipam.status({})).pools.filter((p) => p.pool === SUBNET)).toEqual([]);
  console.log(
    `lost host: reclaimed ${(reclaimedAfterMs / 1000).toFixed(1)} s after its ipam stopped (lease ${ENV.WEAVE_IPAM_HOST_LEASE_MS} ms); ` +
      `containers moved ${(movedAfterMs / 1000).toFixed(1)} s after it came back; whole test ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
});

/** The addresses of this host's records in weave-dns, sorted. */
async function dnsAddresses(): Promise<string[]> {
  const kv = await openBucket(stack.nc, Buckets.dns);
  const out: string[] = [];
  for (const key of await kvKeys(kv, `${dnsHostPrefix(stack.host)}>`)) {
    const e = await kv.get(key);
    if (e?.operation === 'PUT') out.push(...DnsRecord.parse(e.json()).addresses);
  }
  return out.sort();
}

/** `weave status` on this host, as a person runs it. */
async function weaveStatus(): Promise<string> {
  const cli = join(root, 'tools', 'cli', 'src', 'main.ts');
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', cli, 'status'], { cwd: root, env: { ...process.env, WEAVE_HOST: stack.host, ...stack.natsEnv() } });
  return stdout;
}
