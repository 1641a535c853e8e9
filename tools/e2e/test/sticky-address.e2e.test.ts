import { request } from 'node:http';
import { kvKeys, openBucket } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { containerIp, docker } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { DockerScope, E2E_ENV, ipamLeases, PrivateDockerd, ProcessStack, usePrivateDockerd } from '../src';

/**
 * A container with a MAC of its own (`--mac-address`, compose `mac_address`) and `--restart
 * always` keeps its address when Docker re-creates its endpoint: `docker restart`, `docker stop`
 * then `docker start`, dockerd killed (SIGKILL) and started again, dockerd stopped and started
 * (SIGTERM). Docker releases the address each time and asks anew with the same MAC; ipam keeps
 * the address for that MAC meanwhile, so a container started in between gets another one, and
 * reconciliation does not take it.
 *
 * A container without a MAC of its own gets one Docker makes up afresh on every start
 * (dockerd 20.10.24), so nothing can tell its next start from a new container's: its address is
 * whatever is free then. The test shows that too.
 *
 * The dockerd is the test's own (PrivateDockerd), so killing it touches nothing else on the machine.
 */
const SUBNET = '10.251.62.0/24';
const POOL_KEY = 'v4-0afb3e00-24';
const MAC = '02:42:5e:1f:00:01';

let dockerd: PrivateDockerd;
let stack: ProcessStack;
let scope: DockerScope;
// The dockerd's removal takes the container made through the API too, which the scope does not know.
usePrivateDockerd({ ...E2E_ENV, WEAVE_STICKY_ADDRESSES: 'on' }, (t) => ({ dockerd, stack, scope } = t));

const on = (args: string[]) => docker(args, dockerd.cli);
const macOf = (c: string) => on(['exec', c, 'cat', '/sys/class/net/eth0/address']);
const leaseOf = async (address: string) => (await ipamLeases(stack.nc, SUBNET)).find((l) => l.address === address);

test('a --restart always container with a MAC of its own keeps its address across docker restart, stop/start and dockerd restarts; nobody else gets it meanwhile', async () => {
  const t0 = Date.now();
  const events: string[] = [];
  const sub = stack.nc.subscribe(`weave.events.${stack.host}.ipam.address.*`, {
    callback: (_err, m) => {
      const e = m.json<{ kind: string; data: Record<string, string> }>();
      if (e.kind !== 'address.allocated' || e.data.kind === 'endpoint') events.push(`${e.kind} ${e.data.address}${e.data.mac ? ` ${e.data.mac}` : ''}`);
    },
  });
  try {
    const net = await scope.network(stack.plugin, ['--subnet', SUBNET]);
    const own = await createWithMac(dockerd.socket, scope.name('own'), MAC, net);
    await on(['start', own]);
    const address = await containerIp(own, net, dockerd.cli);
    expect(address).toMatch(/^10\.251\.62\./);
    // Docker gives the container the MAC, and netwire made the veth with it.
    expect(await macOf(own)).toBe(MAC);
    expect(await leaseOf(address)).toMatchObject({ host: stack.host, sticky: { mac: MAC } });
    const plain = await scope.run([`--net=${net}`, '--restart', 'always', '--stop-signal', 'KILL']);
    const plainSeen = [`${await containerIp(plain, net, dockerd.cli)} ${await macOf(plain)}`];
    const times: Record<string, number> = {};
    const step = async (what: string, f: () => Promise<unknown>) => {
      const started = Date.now();
      await f();
      const back = await waitFor(async () => ((await on(['inspect', '-f', '{{.State.Running}}', own]).catch(() => '')) === 'true' ? containerIp(own, net, dockerd.cli) : null), {
        what: `${own} running again after ${what}`,
        timeoutMs: 60_000,
        intervalMs: 200,
      });
      times[what] = Date.now() - started;
      expect({ after: what, address: back, mac: await macOf(own) }).toEqual({ after: what, address, mac: MAC });
      plainSeen.push(`${await containerIp(plain, net, dockerd.cli)} ${await macOf(plain).catch(() => '?')}`);
    };

    await step('docker restart', () => on(['restart', own]));

    await step('docker stop, a new container and a reconciliation meanwhile, docker start', async () => {
      await on(['stop', own]);
      expect(await leaseOf(address)).toMatchObject({ host: stack.host, sticky: { mac: MAC, releasedAt: expect.any(String) } });
      const other = await scope.run([`--net=${net}`]);
      expect(await containerIp(other, net, dockerd.cli)).not.toBe(address);
      // Docker has no endpoint with the address, yet it is neither released nor spared as a leak: it is kept.
      const report = await stack.pluginApi.reconcile({});
      expect(report.ipam).toMatchObject({ released: [], spared: 0 });
      expect(await leaseOf(address)).toMatchObject({ sticky: { mac: MAC, releasedAt: expect.any(String) } });
      await scope.removeContainer(other);
      await on(['start', own]);
    });

    await step('dockerd killed (SIGKILL) and started again', async () => {
      await dockerd.kill();
      await dockerd.start();
    });

    await step('dockerd stopped (SIGTERM) and started again', async () => {
      await dockerd.stop();
      await dockerd.start();
    });

    // Afterwards a new container gets another address and reaches the one that kept its own.
    const fresh = await scope.run([`--net=${net}`]);
    expect(await containerIp(fresh, net, dockerd.cli)).not.toBe(address);
    expect(await on(['exec', fresh, 'ping', '-c', '1', '-W', '2', address])).toMatch(/1 packets received/);

    // Removed for good: its address is kept for its MAC, and goes with the network.
    for (const c of [fresh, plain]) await scope.removeContainer(c);
    await on(['rm', '-f', own]);
    await scope.removeNetwork(net);
    expect(await poolKeys()).toEqual([]);
    expect(dockerd.log()).not.toMatch(/not in use on host|does not exist \(was the network removed\?\)/);
    console.log(
      `sticky address ${address} (MAC ${MAC}) kept; seconds until the container ran again: ${Object.entries(times).map(([k, v]) => `${k}: ${(v / 1000).toFixed(1)}`).join('; ')}; ` +
        `whole test ${((Date.now() - t0) / 1000).toFixed(1)} s.\nipam's address events: ${events.join(', ')}.\n` +
        `the container without a MAC of its own, address and MAC at each step: ${plainSeen.join(' | ')}`,
    );
  } finally {
    sub.unsubscribe();
  }
});

/** Every KV key of the pool: its record, its blocks, its leases. */
async function poolKeys(): Promise<string[]> {
  const keys = async (bucket: string, filter: string) => kvKeys(await openBucket(stack.nc, bucket), filter);
  return [...(await keys(Buckets.ipamPools, POOL_KEY)), ...(await keys(Buckets.ipamBlocks, `${POOL_KEY}.>`)), ...(await keys(Buckets.ipamLeases, `${POOL_KEY}.>`))];
}

/**
 * `docker create --mac-address … --restart always` of the workload image, through the Engine API
 * 1.41 (dockerd 20.10's `Config.MacAddress`): docker 28's CLI sends --mac-address per network,
 * which needs API 1.44. Compose's `mac_address` sends the same as this. Removed with the dockerd.
 */
function createWithMac(socketPath: string, name: string, mac: string, network: string): Promise<string> {
  const body = JSON.stringify({
    Image: 'weave-bbox:local',
    Cmd: ['sleep', '1d'],
    MacAddress: mac,
    StopSignal: 'KILL',
    HostConfig: { NetworkMode: network, RestartPolicy: { Name: 'always' } },
  });
  const path = `/v1.41/containers/create?name=${encodeURIComponent(name)}`;
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => (res.statusCode === 201 ? resolve(name) : reject(new Error(`POST ${path}: ${res.statusCode} ${data}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}
