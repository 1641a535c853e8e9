import { containerIp, docker, dockerResult } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { ProcessStack, useStack, weaveLinks, weaveRules } from '../src';

/**
 * What a user does with one Docker host, driven through the real dockerd and the real services.
 * Subnets are in 10.251.0.0/16, which the tests own; traffic only flows between the containers
 * they start and the bridge that serves as their gateway.
 */
let stack: ProcessStack;
let linksBefore: string[];
let rulesBefore: string[];
beforeAll(() => {
  linksBefore = weaveLinks();
  rulesBefore = weaveRules();
});
const scope = useStack((s) => (stack = s));

/** The container's default route line ("" for none); busybox's `ip route` ignores selectors. */
const defaultRoute = async (c: string) => (await docker(['exec', c, 'ip', 'route'])).split('\n').filter((l) => l.startsWith('default')).map((l) => l.trim()).join('\n');
const ping = (from: string, to: string) => docker(['exec', from, 'ping', '-c', '2', '-W', '2', to]);
const ipOf = async (c: string, net: string) => {
  const ip = await containerIp(c, net);
  expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  return ip;
};

test('a network without --subnet: containers get addresses, ARP, ping and TCP work, the gateway answers', async () => {
  const net = await scope.network(stack.plugin);
  const a = await scope.run([`--net=${net}`], ['sh', '-c', 'while true; do echo hello-from-a | nc -l -p 8080; done']);
  const b = await scope.run([`--net=${net}`]);
  const [ipA, ipB] = [await ipOf(a, net), await ipOf(b, net)];
  expect(ipA).not.toBe(ipB);
  expect(await ping(b, ipA)).toMatch(/2 packets received/);
  expect(await docker(['exec', b, 'ip', 'neigh', 'show', ipA])).toMatch(/lladdr/);
  const got = await waitFor(async () => {
    const r = await dockerResult(['exec', b, 'nc', '-w', '2', ipA, '8080']);
    return r.ok && r.out.includes('hello-from-a') ? r.out : null;
  }, { what: 'a TCP answer from a' });
  expect(got).toBe('hello-from-a');
  const route = await defaultRoute(b);
  const gateway = route.match(/default via (\S+) dev eth0/)?.[1];
  expect(gateway).toBeDefined();
  expect(await ping(b, gateway!)).toMatch(/2 packets received/);
  // One interface only: no docker_gwbridge leg was added.
  expect(await docker(['exec', b, 'ls', '/sys/class/net'])).toBe('eth0\nlo');
});

test('--subnet, --ip-range, --gateway, --aux-address and a static --ip', async () => {
  const net = await scope.network(stack.plugin, ['--subnet', '10.251.1.0/24', '--ip-range', '10.251.1.128/25', '--gateway', '10.251.1.254', '--aux-address', 'printer=10.251.1.200']);
  const a = await scope.run([`--net=${net}`]);
  const ipA = await ipOf(a, net);
  expect(Number(ipA.split('.')[3])).toBeGreaterThanOrEqual(128);
  expect(await defaultRoute(a)).toBe('default via 10.251.1.254 dev eth0');
  const s = await scope.run([`--net=${net}`, '--ip', '10.251.1.7']);
  expect(await ipOf(s, net)).toBe('10.251.1.7');
  expect(await ping(s, ipA)).toMatch(/2 packets received/);

  // The address is taken: the user gets a clear error and nothing is left half-made.
  const clash = await scope.tryRun([`--net=${net}`, '--ip', '10.251.1.7']);
  expect(clash.ok).toBe(false);
  expect(!clash.ok && clash.err.stderr).toMatch(/10\.251\.1\.7 is already in use/);
  const aux = await scope.tryRun([`--net=${net}`, '--ip', '10.251.1.200']);
  expect(aux.ok).toBe(false);
});

test('a small --ip-range runs out with a clear error, and an address comes back when released', async () => {
  const net = await scope.network(stack.plugin, ['--subnet', '10.251.2.0/24', '--ip-range', '10.251.2.8/30']);
  const made: string[] = [];
  for (let i = 0; i < 4; i++) made.push(await scope.run([`--net=${net}`]));
  const ips = await Promise.all(made.map((c) => ipOf(c, net)));
  expect(new Set(ips).size).toBe(4);
  const extra = scope.name('extra');
  const full = await scope.tryRun([`--net=${net}`], undefined, extra);
  expect(full.ok).toBe(false);
  expect(!full.ok && full.err.stderr).toMatch(/no free address in 10\.251\.2\.8\/30/);
  await scope.removeContainer(extra);
  await scope.removeContainer(made[0]!);
  const again = await scope.run([`--net=${net}`]);
  expect(await ipOf(again, net)).toBe(ips[0]);
  const status = await stack.ipam.status({});
  const pool = status.pools.find((p) => p.pool === '10.251.2.0/24');
  // 4 endpoints in the range; the gateway lives outside it.
  expect(pool?.blocks.reduce((n, b) => n + b.used, 0)).toBe(4);
});

test('--internal: containers reach each other but get no gateway and no route out', async () => {
  const net = await scope.network(stack.plugin, ['--internal']);
  const a = await scope.run([`--net=${net}`]);
  const b = await scope.run([`--net=${net}`]);
  expect(await ping(a, await ipOf(b, net))).toMatch(/2 packets received/);
  expect(await defaultRoute(a)).toBe('');
  expect(await docker(['exec', a, 'ls', '/sys/class/net'])).toBe('eth0\nlo');
});

test('-o com.docker.network.driver.mtu sets the MTU of the container interface', async () => {
  const net = await scope.network(stack.plugin, ['-o', 'com.docker.network.driver.mtu=1300']);
  const a = await scope.run([`--net=${net}`]);
  expect(await docker(['exec', a, 'cat', '/sys/class/net/eth0/mtu'])).toBe('1300');
});

test('connect and disconnect a running container; stop, start, restart and rm', async () => {
  const n1 = await scope.network(stack.plugin);
  const n2 = await scope.network(stack.plugin);
  const a = await scope.run([`--net=${n1}`]);
  const b = await scope.run([`--net=${n2}`]);
  await docker(['network', 'connect', n2, a]);
  expect(await ping(a, await ipOf(b, n2))).toMatch(/2 packets received/);
  await docker(['network', 'disconnect', n2, a]);
  expect(await docker(['exec', a, 'ls', '/sys/class/net'])).toBe('eth0\nlo');

  await docker(['stop', '-t', '0', b]);
  await docker(['start', b]);
  await docker(['restart', '-t', '0', b]);
  const ipB = await ipOf(b, n2);
  const c = await scope.run([`--net=${n2}`]);
  expect(await ping(c, ipB)).toMatch(/2 packets received/);
});

test('a network made with Docker\'s default IPAM is refused with a message that says what to do', async () => {
  const r = await dockerResult(['network', 'create', '-d', stack.plugin, scope.name('noipam')]);
  expect(r.ok).toBe(false);
  expect(!r.ok && r.err.stderr).toMatch(new RegExp(`--ipam-driver weave`));
});

test('after removing everything, nothing is left: links, rules, leases, endpoints', async () => {
  await scope.cleanup();
  await waitFor(async () => (await stack.netwire.status({})).networks.length === 0, { what: 'netwire to forget every network' });
  const wire = await stack.netwire.status({});
  expect(wire.endpoints).toEqual([]);
  expect((await stack.ipam.status({})).pools).toEqual([]);
  // Veths go right after DeleteEndpoint replies, off Docker's path.
  await waitFor(() => JSON.stringify(weaveLinks()) === JSON.stringify(linksBefore), { what: 'every weave link to go' });
  expect(weaveRules()).toEqual(rulesBefore);
});
