import { request } from 'node:http';
import { kvKeys, openBucket } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { containerIp, docker, dockerResult } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { DockerScope, E2E_ENV, PrivateDockerd, ProcessStack, usePrivateDockerd } from '../src';

/**
 * dockerd crashes (SIGKILL) while weave's stack keeps running, and starts again: its weave
 * network is still there with the same subnet and one pool reference on this host, a container
 * with a restart policy comes back on it, a new one reaches it, a second network asking for the
 * same subnet is refused and named, and `docker network rm` afterwards releases everything.
 *
 * The dockerd is the test's own (PrivateDockerd: own data root and containerd, the machine's
 * network namespace), so killing it touches nothing else on the machine.
 */
const SUBNET = '10.251.60.0/24';
const POOL_KEY = 'v4-0afb3c00-24';
const LEFTOVER_SUBNET = '10.251.61.0/24';
/**
 * The shortest grace plugin-api accepts for this RPC timeout (2 × 2 s + 15 s), so that a leftover
 * reference becomes one a create may take over within the test; no periodic reconciliation pass,
 * which would release that leftover on its own first.
 */
const ENV = { ...E2E_ENV, WEAVE_RPC_TIMEOUT_MS: '2000', WEAVE_RECONCILE_GRACE_MS: '19000', WEAVE_RECONCILE_INTERVAL_MS: '3600000' };

let dockerd: PrivateDockerd;
let stack: ProcessStack;
let scope: DockerScope;
usePrivateDockerd(ENV, (t) => ({ dockerd, stack, scope } = t));

const on = (args: string[]) => docker(args, dockerd.cli);
const keysOf = async (bucket: string, filter: string) => kvKeys(await openBucket(stack.nc, bucket), filter);
/** Every KV key of the pool: its record, its blocks, its leases. */
const poolKeys = async (key: string) => [
  ...(await keysOf(Buckets.ipamPools, key)),
  ...(await keysOf(Buckets.ipamBlocks, `${key}.>`)),
  ...(await keysOf(Buckets.ipamLeases, `${key}.>`)),
];

test('after dockerd is killed and restarted under a running stack, its weave network keeps working and is removed cleanly', async () => {
  const t0 = Date.now();
  const net = await scope.network(stack.plugin, ['--subnet', SUBNET]);
  const networkId = await on(['network', 'inspect', '-f', '{{.Id}}', net]);
  // --restart always: dockerd starts it again itself; a stop signal it obeys at once, since
  // dockerd stops the containers it finds running when it starts without live-restore.
  const old = await scope.run([`--net=${net}`, '--restart', 'always', '--stop-signal', 'KILL']);
  expect(await containerIp(old, net, dockerd.cli)).toMatch(/^10\.251\.60\./);
  const holders = { [stack.host]: 1 };
  expect((await stack.ipam.status({})).pools).toEqual([expect.objectContaining({ pool: SUBNET, holders })]);

  const mark = pluginCalls().length;
  await dockerd.kill();
  const killedAt = Date.now();
  await dockerd.start();
  const back = await waitFor(async () => (await containerIp(old, net, dockerd.cli).catch(() => '')) || null, {
    what: `${old} running again on ${net}`,
    timeoutMs: 60_000,
    intervalMs: 200,
  });
  const restartMs = Date.now() - killedAt;
  const restartCalls = pluginCalls().slice(mark);
  expect(['plugin-api', 'ipam', 'netwire'].every((s) => stack.isAlive(s as 'ipam'))).toBe(true);

  // The network as it was, with one reference on this host (not a second one from a re-request).
  expect(await on(['network', 'inspect', '-f', '{{.Id}} {{range .IPAM.Config}}{{.Subnet}}{{end}}', net])).toBe(`${networkId} ${SUBNET}`);
  expect((await stack.ipam.status({})).pools).toEqual([expect.objectContaining({ pool: SUBNET, holders })]);

  const fresh = await scope.run([`--net=${net}`]);
  const freshIp = await containerIp(fresh, net, dockerd.cli);
  expect(freshIp).toMatch(/^10\.251\.60\./);
  expect(freshIp).not.toBe(back);
  expect(await on(['exec', fresh, 'ping', '-c', '1', '-W', '2', back])).toMatch(/1 packets received/);

  // A second network on this subnet is another network, not the first asked again: refused, named.
  const second = await dockerResult(['network', 'create', '-d', stack.plugin, '--ipam-driver', stack.plugin, '--subnet', SUBNET, scope.name('net2')], dockerd.cli);
  expect(second.ok).toBe(false);
  expect(second.ok ? '' : second.err.stderr).toMatch(new RegExp(`subnet ${SUBNET} is already used by network ${net.replace('.', '\\.')} \\(${networkId.slice(0, 12)}\\) on this host`));
  expect((await stack.ipam.status({})).pools).toEqual([expect.objectContaining({ pool: SUBNET, holders })]);

  // A stray ReleasePool, as a clean-up after a failed re-request would send it, while Docker still
  // has the network: answered, but the reference the network relies on stays.
  const poolId = (await stack.ipam.status({})).pools[0]!.poolId;
  expect(await pluginCall(stack.socket, 'IpamDriver.ReleasePool', { PoolID: poolId })).toEqual({ status: 200, body: {} });
  expect((await stack.ipam.status({})).pools).toEqual([expect.objectContaining({ pool: SUBNET, holders })]);
  const third = await scope.run([`--net=${net}`]);
  expect(await on(['exec', third, 'ping', '-c', '1', '-W', '2', back])).toMatch(/1 packets received/);
  await scope.removeContainer(third);

  await scope.removeContainer(old);
  await scope.removeContainer(fresh);
  await scope.removeNetwork(net);
  expect((await stack.ipam.status({})).pools).toEqual([]);
  expect(await poolKeys(POOL_KEY)).toEqual([]);
  // Docker only logs a failed ReleasePool or ReleaseAddress: its log is where one would show.
  expect(dockerd.log()).not.toMatch(/not in use on host|does not exist \(was the network removed\?\)/);
  console.log(
    `dockerd restart: container back ${(restartMs / 1000).toFixed(1)} s after the kill; whole test ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
      `what the restarted dockerd asked of the plugin until then: ${restartCalls.join(', ')}`,
  );
});

test('a network create asked again after its reply was lost takes over the reference it left, once no create can be in flight', async () => {
  const t0 = Date.now();
  // What a create whose RequestPool reply was lost leaves: this host's reference, no network.
  const leftover = await stack.ipam.requestPool({ addressSpace: 'weave-local', pool: LEFTOVER_SUBNET, subPool: null, v6: false, options: {} });
  const name = scope.name('net');
  scope.track(name);
  const create = () => dockerResult(['network', 'create', '-d', stack.plugin, '--ipam-driver', stack.plugin, '--subnet', LEFTOVER_SUBNET, name], dockerd.cli);
  // Young, it may be another create's in flight: refused, saying when to try again.
  const early = await create();
  expect(early.ok ? '' : early.err.stderr).toMatch(new RegExp(`subnet ${LEFTOVER_SUBNET} was taken moments ago by a network being created on this host .*try again in \\d+ s`));
  const created = await waitFor(async () => (await create()).ok, { what: `${name} to be created once the leftover is older than the grace`, timeoutMs: 40_000, intervalMs: 1000 });
  expect(created).toBe(true);
  const takenOverAfterMs = Date.now() - t0;

  const status = (await stack.ipam.status({})).pools.filter((p) => p.pool === LEFTOVER_SUBNET);
  expect(status).toEqual([expect.objectContaining({ poolId: leftover.poolId, holders: { [stack.host]: 1 } })]);
  const c = await scope.run([`--net=${name}`]);
  expect(await containerIp(c, name, dockerd.cli)).toMatch(/^10\.251\.61\./);
  await scope.removeContainer(c);
  // The network's one ReleasePool balances the one reference: nothing of the pool is left.
  await scope.removeNetwork(name);
  expect((await stack.ipam.status({})).pools.filter((p) => p.pool === LEFTOVER_SUBNET)).toEqual([]);
  expect(await poolKeys('v4-0afb3d00-24')).toEqual([]);
  console.log(`leftover reference taken over ${(takenOverAfterMs / 1000).toFixed(1)} s after it was made (grace ${ENV.WEAVE_RECONCILE_GRACE_MS} ms)`);
});

/** The plugin methods Docker called so far, in order, from plugin-api's debug log. */
function pluginCalls(): string[] {
  return stack
    .logTail('plugin-api', Number.MAX_SAFE_INTEGER)
    .split('\n')
    .flatMap((l) => {
      const m = /"method":"([A-Za-z.]+)".*"msg":"docker call"/.exec(l);
      return m ? [m[1]!] : [];
    });
}

/** One plugin call as Docker makes it, on the plugin's socket. */
function pluginCall(socketPath: string, method: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: `/${method}`, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) }));
    });
    req.on('error', reject);
    req.end(text);
  });
}
