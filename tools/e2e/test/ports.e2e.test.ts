import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { docker } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { ProcessStack, useStack } from '../src';

/**
 * `docker run -p` on a weave network, through the real dockerd and the real services: Docker
 * publishes nothing for a plugin's network, so netwire does. Every connection goes from this host
 * to its own loopback or its own address, and on to the containers the tests started.
 */
jest.setTimeout(120_000);
let stack: ProcessStack;
const scope = useStack((s) => (stack = s));

/** Busybox answers each TCP connection on 8000 with a line naming the container. */
const tcpServer = (name: string) => ['sh', '-c', `while true; do echo hello-from-${name} | nc -l -p 8000; done`];
/** Busybox has no UDP server: the base image's node echoes datagrams on 8001. */
const UDP_ECHO = `const u = require('dgram').createSocket('udp4'); u.on('message', (m, r) => u.send('echo:' + m, r.port, r.address)); u.bind(8001);`;

/** The first line a TCP server sends, or why there is none (ECONNREFUSED, timeout). */
const askTcp = (host: string, port: number): Promise<string> =>
  new Promise((resolve) => {
    const s = connect(port, host);
    let got = '';
    const done = (r: string) => (s.destroy(), resolve(r));
    s.setTimeout(3000, () => done('timeout'));
    s.on('data', (d) => ((got += d), got.includes('\n') && done(got.trim())));
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
const askUdp = (host: string, port: number, text: string): Promise<string> =>
  new Promise((resolve) => {
    const u = createSocket('udp4');
    const done = (r: string) => (u.close(), resolve(r));
    const timer = setTimeout(() => done('timeout'), 2000);
    u.on('message', (m) => (clearTimeout(timer), done(String(m))));
    u.on('error', (e: NodeJS.ErrnoException) => (clearTimeout(timer), done(e.code ?? e.message)));
    u.send(text, port, host);
  });
/** Asks until the container's server answers (nc is between two connections now and then: refused). */
const answer = (host: string, port: number, expected: string) =>
  waitFor(async () => ((await askTcp(host, port)) === expected ? expected : null), { what: `${expected} on ${host}:${port}`, timeoutMs: 15_000, intervalMs: 200 });

/** A port free on this host for both TCP and UDP, outside the ephemeral range netwire picks from for -p <port>. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const tcp = await new Promise<boolean>((resolve) => {
      const s = createServer().once('error', () => resolve(false));
      s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
    });
    const udp = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4').once('error', () => resolve(false));
      u.bind(port, '0.0.0.0', () => u.close(() => resolve(true)));
    });
    if (tcp && udp && portRules(`--dport ${port} `).length === 0) return port;
  }
}

/** This host's own IPv4 address on an interface that is neither loopback nor weave's. */
function hostAddress(): string {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const a = !name.startsWith('wv') && addrs?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  throw new Error('this host has no IPv4 address besides loopback');
}

/** Published-port rules in this host's filter and nat tables, of one endpoint (host veth) or with some text. */
function portRules(text = ''): string[] {
  const lines = ['filter', 'nat'].flatMap((t) => execFileSync('iptables', ['-t', t, '-S'], { encoding: 'utf8' }).split('\n'));
  return lines.filter((l) => l.includes('weave-port:') && l.includes(text));
}
const hostVethOf = async (container: string, network: string) =>
  `wvh${(await docker(['inspect', '-f', `{{(index .NetworkSettings.Networks ${JSON.stringify(network)}).EndpointID}}`, container])).slice(0, 11)}`;
const publishedOf = async (hostVeth: string) => (await stack.netwire.status({})).endpoints.find((e) => e.hostVeth === hostVeth)?.ports ?? [];

test('publishes a TCP port on every address: the host reaches it on its loopback and its own address; docker rm -f takes the rules away', async () => {
  const net = await scope.network(stack.plugin);
  const port = await freePort();
  const c = await scope.run([`--net=${net}`, '-p', `${port}:8000`], tcpServer('c1'));
  const veth = await hostVethOf(c, net);
  await answer('127.0.0.1', port, 'hello-from-c1');
  await answer(hostAddress(), port, 'hello-from-c1');
  expect(portRules(veth)).toHaveLength(4); // DNAT, FORWARD accept, hairpin and loopback masquerade

  // Docker shows nothing of a plugin's ports, whatever the plugin answers: weave does.
  expect(await docker(['port', c])).toBe('');
  expect(await docker(['ps', '--filter', `name=${c}`, '--format', '{{.Ports}}'])).toBe('');
  expect(await publishedOf(veth)).toEqual([{ protocol: 'tcp', hostIp: null, hostPort: port, containerIp: expect.any(String), containerPort: 8000 }]);

  await scope.removeContainer(c);
  expect(portRules(veth)).toEqual([]);
  expect(await askTcp('127.0.0.1', port)).toBe('ECONNREFUSED');
});

test('-p 127.0.0.1:… answers on loopback only, UDP ports are published, and -p <port> takes a free ephemeral one', async () => {
  const net = await scope.network(stack.plugin);
  const [local, udp] = [await freePort(), await freePort()];
  const c = await scope.run([`--net=${net}`, '-p', `127.0.0.1:${local}:8000`, '-p', '8000'], tcpServer('c2'));
  await answer('127.0.0.1', local, 'hello-from-c2');
  expect(await askTcp(hostAddress(), local)).toBe('ECONNREFUSED');
  const published = await publishedOf(await hostVethOf(c, net));
  expect(published.find((p) => p.hostIp === '127.0.0.1')).toMatchObject({ hostPort: local, containerPort: 8000 });
  const any = published.find((p) => p.hostIp === null);
  const [first, last] = execFileSync('cat', ['/proc/sys/net/ipv4/ip_local_port_range'], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
  expect(any!.hostPort).toBeGreaterThanOrEqual(first!);
  expect(any!.hostPort).toBeLessThanOrEqual(last!);
  await answer('127.0.0.1', any!.hostPort, 'hello-from-c2');

  await scope.runImage('weave-base:local', [`--net=${net}`, '-p', `${udp}:8001/udp`], ['node', '-e', UDP_ECHO]);
  const echoed = await waitFor(async () => ((await askUdp('127.0.0.1', udp, 'hi')) === 'echo:hi' ? true : null), { what: 'a UDP echo through 127.0.0.1', timeoutMs: 15_000 });
  expect(echoed).toBe(true);
  expect(await askUdp(hostAddress(), udp, 'there')).toBe('echo:there');
});

test('a port already published is refused with who holds it: weave, or Docker for its own bridge', async () => {
  const net = await scope.network(stack.plugin);
  const [port, dockers] = [await freePort(), await freePort()];
  const first = await scope.run([`--net=${net}`, '-p', `${port}:8000`], tcpServer('first'));
  const firstVeth = await hostVethOf(first, net);
  const second = await scope.tryRun([`--net=${net}`, '-p', `${port}:8000`]);
  expect(second.ok).toBe(false);
  expect(!second.ok && second.err.stderr).toContain(`port ${port}/tcp is already published by weave for endpoint ${firstVeth}`);
  // The refused container left nothing behind, and the first still answers.
  expect(portRules('weave-port:').filter((r) => r.includes(`--dport ${port} `))).toHaveLength(1);
  await answer('127.0.0.1', port, 'hello-from-first');

  await scope.run(['-p', `${dockers}:8000`]); // Docker's own bridge network
  const third = await scope.tryRun([`--net=${net}`, '-p', `${dockers}:8000`]);
  expect(!third.ok && third.err.stderr).toMatch(new RegExp(`port ${dockers}/tcp is already (published by Docker|in use on this host)`));
});

test('an internal network refuses publishing, unless the container has a non-internal network to publish on', async () => {
  const internal = await scope.network(stack.plugin, ['--internal']);
  const open = await scope.network(stack.plugin);
  const port = await freePort();
  const alone = await scope.tryRun([`--net=${internal}`, '-p', `${port}:8000`]);
  expect(alone.ok).toBe(false);
  expect(!alone.ok && alone.err.stderr).toContain(`${internal} is an internal network (--internal): nothing on it can be reached from outside, so it cannot publish ${port}:8000/tcp`);
  expect(portRules(`--dport ${port} `)).toEqual([]);

  // On both networks, the container's ports are published through the open one.
  const both = await scope.create([`--net=${internal}`, '-p', `${port}:8000`], tcpServer('both'));
  await docker(['network', 'connect', open, both]);
  await docker(['start', both]);
  await answer('127.0.0.1', port, 'hello-from-both');
  expect(portRules(await hostVethOf(both, open))).toHaveLength(4);
});

test('a netwire restart puts back rules that went missing and removes those of endpoints that are gone', async () => {
  const net = await scope.network(stack.plugin);
  const port = await freePort();
  const c = await scope.run([`--net=${net}`, '-p', `${port}:8000`], tcpServer('c5'));
  const veth = await hostVethOf(c, net);
  await answer('127.0.0.1', port, 'hello-from-c5');
  const bridge = `wvb${JSON.parse(await docker(['network', 'inspect', '-f', '{{json .Id}}', net])).slice(0, 11)}`;
  const leftover = ['-t', 'nat', 'WEAVE-PORTS', '-p', 'tcp', '-m', 'tcp', '--dport', String(await freePort()), '-m', 'comment', '--comment', `weave-port:${bridge}/wvh00000000000`, '-j', 'DNAT', '--to-destination', '10.251.255.254:1'];
  const iptables = (op: '-A' | '-D', rule: string[]) => execFileSync('iptables', ['-w', '5', rule[0]!, rule[1]!, op, ...rule.slice(2)]);
  try {
    await stack.kill('netwire');
    // Gone while netwire was down (a reboot, a flush), and a crash's leftover.
    for (const line of portRules(veth)) {
      const table = line.includes('-j DNAT') || line.includes('-j MASQUERADE') ? 'nat' : 'filter';
      execFileSync('sh', ['-c', `iptables -w 5 -t ${table} ${line.replace(/^-A /, '-D ')}`]);
    }
    iptables('-A', leftover);
    expect(portRules(veth)).toEqual([]);
    expect(await askTcp('127.0.0.1', port)).not.toBe('hello-from-c5');

    await stack.startService('netwire');
    expect(portRules(veth)).toHaveLength(4);
    expect(portRules('wvh00000000000')).toEqual([]);
    await answer('127.0.0.1', port, 'hello-from-c5');
  } finally {
    if (portRules('wvh00000000000').length > 0) iptables('-D', leftover);
  }
});
