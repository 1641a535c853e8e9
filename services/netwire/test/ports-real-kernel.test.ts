import { ChildProcess, spawn } from 'node:child_process';
import type { PortRequest } from '@weave/contracts';
import { inNs, isRoot, rulesIn, sh, useNetnsLab, type Host } from './netns-lab';
import { networkSpec, newId } from './helpers';

/**
 * Published ports on a real kernel, in throwaway namespaces: a "host" with netwire, an "outside"
 * namespace wired to it (the LAN), and containers. Servers and clients are small node scripts run
 * inside the namespaces; every answer says whom the server saw, so NAT shows as well as reach.
 */
jest.setTimeout(60_000);
const describeRoot = isRoot ? describe : describe.skip;
if (!isRoot) console.warn('netwire published-port real-kernel tests SKIPPED: they need root');

const SERVER = `
const [port, name] = process.argv.slice(1);
require('net').createServer((s) => s.end(name + ' tcp from ' + s.remoteAddress)).listen(+port, '0.0.0.0');
const u = require('dgram').createSocket('udp4');
u.on('message', (m, r) => u.send(name + ' udp from ' + r.address, r.port, r.address));
u.bind(+port, '0.0.0.0', () => console.log('ready'));
`;
const CLIENT = `
const [proto, host, port] = process.argv.slice(1);
const done = (s) => { console.log(s); process.exit(0); };
setTimeout(() => done('no answer'), 1500);
if (proto === 'tcp') {
  const c = require('net').connect(+port, host);
  let got = '';
  c.on('data', (d) => (got += d)).on('end', () => done(got)).on('error', (e) => done(e.code));
} else {
  const u = require('dgram').createSocket('udp4');
  u.on('message', (m) => done(String(m)));
  u.send('ping', +port, host);
}
`;
const OUTSIDE = { host: '198.51.100.1', client: '198.51.100.2' };

describeRoot('published ports on a real kernel (throwaway namespaces)', () => {
  const lab = useNetnsLab();
  const servers: ChildProcess[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.kill('SIGKILL');
  });

  /** A TCP and UDP server on `port` in `ns`, answering with its name and whom it sees. */
  async function serve(ns: string, port: number, name: string): Promise<void> {
    const p = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, '-e', SERVER, String(port), name], { stdio: ['ignore', 'pipe', 'inherit'] });
    servers.push(p);
    await new Promise<void>((resolve, reject) => {
      p.stdout!.once('data', () => resolve());
      p.once('exit', (code) => reject(new Error(`server in ${ns} exited (${code})`)));
    });
  }
  const ask = async (ns: string, proto: 'tcp' | 'udp', address: string, port: number): Promise<string> =>
    (await inNs(ns, process.execPath, '-e', CLIENT, proto, address, String(port))).trim();

  /** The host with forwarding on, and an outside namespace on a link to it. */
  async function world() {
    const h = await lab.host();
    await inNs(h.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    const outside = await lab.newNs('x');
    await sh('ip', '-n', h.ns, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside);
    await inNs(h.ns, 'ip', 'addr', 'add', `${OUTSIDE.host}/24`, 'dev', 'uplink');
    await inNs(h.ns, 'ip', 'link', 'set', 'uplink', 'up');
    await inNs(outside, 'ip', 'addr', 'add', `${OUTSIDE.client}/24`, 'dev', 'eth0');
    await inNs(outside, 'ip', 'link', 'set', 'eth0', 'up');
    return { h, outside };
  }

  async function container(h: Host, pool: string, last: number) {
    const net = networkSpec({ ipv4: [{ pool: `${pool}.0/24`, gateway: `${pool}.1/24` }] });
    await h.client.createNetwork(net).catch(() => undefined); // the second container of a network
    const ref = { networkId: net.networkId, endpointId: newId() };
    return { net, ref, plug: (networkId = net.networkId) => plug(h, { networkId, endpointId: ref.endpointId }, `${pool}.${last}`, `${pool}.1`) };
  }
  async function plug(h: Host, ref: { networkId: string; endpointId: string }, ip: string, gateway: string) {
    await h.client.createEndpoint({ ...ref, address: `${ip}/24`, addressV6: null, mac: null });
    const j = await h.client.join({ ...ref, sandboxKey: '/x' });
    return { ref, ip, ns: await lab.plugContainer(h.ns, j.srcName, `${ip}/24`, gateway) };
  }
  const tcp = (hostPort: number, o: Partial<PortRequest> = {}): PortRequest => ({ protocol: 'tcp', containerPort: 8000, hostIp: null, hostPort, hostPortEnd: hostPort, ...o });
  const portRules = async (ns: string) => (await rulesIn(ns)).filter((r) => r.includes('weave-port:'));

  it('carries the host, its loopback, the outside, the container itself and another network to the container', async () => {
    const { h, outside } = await world();
    const one = await container(h, '10.77.0', 2);
    const a = await one.plug();
    const c = await (await container(h, '10.78.0', 2)).plug();
    await serve(a.ns, 8000, 'a');
    const r = await h.client.publishPorts({ ...a.ref, ports: [tcp(8080), tcp(8080, { protocol: 'udp' }), tcp(8081, { hostIp: '127.0.0.1' })] });
    expect(r.ports.map((p) => `${p.hostIp ?? '*'}:${p.hostPort}/${p.protocol}->${p.containerIp}:${p.containerPort}`)).toEqual([
      '*:8080/tcp->10.77.0.2:8000',
      '*:8080/udp->10.77.0.2:8000',
      '127.0.0.1:8081/tcp->10.77.0.2:8000',
    ]);
    const bridge = `wvb${one.net.networkId.slice(0, 11)}`;
    expect((await inNs(h.ns, 'cat', `/proc/sys/net/ipv4/conf/${bridge}/route_localnet`)).trim()).toBe('1');

    // From the host itself: its loopback (masqueraded: a container cannot answer 127.0.0.1) and its own address.
    expect(await ask(h.ns, 'tcp', '127.0.0.1', 8080)).toBe('a tcp from 10.77.0.1');
    expect(await ask(h.ns, 'tcp', '127.0.0.1', 8081)).toBe('a tcp from 10.77.0.1');
    expect(await ask(h.ns, 'tcp', OUTSIDE.host, 8080)).toBe(`a tcp from ${OUTSIDE.host}`);
    expect(await ask(h.ns, 'udp', '127.0.0.1', 8080)).toBe('a udp from 10.77.0.1');
    // From outside: the client's own address reaches the container; the loopback-only port does not exist there.
    expect(await ask(outside, 'tcp', OUTSIDE.host, 8080)).toBe(`a tcp from ${OUTSIDE.client}`);
    expect(await ask(outside, 'udp', OUTSIDE.host, 8080)).toBe(`a udp from ${OUTSIDE.client}`);
    expect(await ask(outside, 'tcp', OUTSIDE.host, 8081)).toBe('ECONNREFUSED');
    // The container through its own published port (hairpin), and a container of another network
    // (masqueraded as it leaves its own network, as for any other way out).
    expect(await ask(a.ns, 'tcp', OUTSIDE.host, 8080)).toBe('a tcp from 10.77.0.1');
    expect(await ask(c.ns, 'tcp', OUTSIDE.host, 8080)).toBe('a tcp from 10.77.0.1');
    // Another container of the same network, through the host.
    const b = await plug(h, { networkId: one.net.networkId, endpointId: newId() }, '10.77.0.3', '10.77.0.1');
    expect(await ask(b.ns, 'tcp', OUTSIDE.host, 8080)).toBe('a tcp from 10.77.0.3');

    // Revoked: nothing answers, nothing of ours is left.
    await h.client.unpublishPorts(a.ref);
    expect(await ask(h.ns, 'tcp', '127.0.0.1', 8080)).toBe('ECONNREFUSED');
    expect(await ask(outside, 'tcp', OUTSIDE.host, 8080)).toBe('ECONNREFUSED');
    expect(await portRules(h.ns)).toEqual([]);
  });

  it("keeps the host's loopback out of reach of containers, although their bridge routes 127.0.0.0/8", async () => {
    const { h } = await world();
    const a = await (await container(h, '10.77.0', 2)).plug();
    await h.client.publishPorts({ ...a.ref, ports: [tcp(8080)] });
    await serve(h.ns, 7777, 'host');
    // A container that sends 127.0.0.9 to its gateway, as a hostile one can.
    await inNs(a.ns, 'sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1');
    await inNs(a.ns, 'ip', 'route', 'del', 'local', '127.0.0.0/8', 'dev', 'lo', 'table', 'local');
    await inNs(a.ns, 'ip', 'route', 'add', '127.0.0.9/32', 'via', '10.77.0.1', 'dev', 'eth0');
    expect(await ask(a.ns, 'tcp', '127.0.0.9', 7777)).toBe('no answer');
    // The raw table's DROP is what stops it: without it the host answers, and reconcile puts it back.
    await inNs(h.ns, 'iptables', '-t', 'raw', '-D', 'WEAVE-PREROUTING', '-d', '127.0.0.0/8', '-i', 'wvb+', '-j', 'DROP');
    expect(await ask(a.ns, 'tcp', '127.0.0.9', 7777)).toBe('host tcp from 10.77.0.2');
    await h.service.netwire.reconcile();
    expect(await ask(a.ns, 'tcp', '127.0.0.9', 7777)).toBe('no answer');
  });

  it("refuses a port that is taken, puts rules back after a restart, and removes a dead endpoint's", async () => {
    const { h, outside } = await world();
    const one = await container(h, '10.77.0', 2);
    const a = await one.plug();
    const b = await plug(h, { networkId: one.net.networkId, endpointId: newId() }, '10.77.0.3', '10.77.0.1');
    await serve(a.ns, 8000, 'a');
    await h.client.publishPorts({ ...a.ref, ports: [tcp(8080)] });
    await expect(h.client.publishPorts({ ...b.ref, ports: [tcp(8080)] })).rejects.toThrow(
      `port 8080/tcp is already published by weave for endpoint wvh${a.ref.endpointId.slice(0, 11)} (to 10.77.0.2:8000)`,
    );
    await serve(h.ns, 9999, 'host');
    await expect(h.client.publishPorts({ ...b.ref, ports: [tcp(9999)] })).rejects.toThrow(/port 9999\/tcp is already in use on this host: .*listens on 0\.0\.0\.0:9999/);

    // Flushed while netwire was down, plus a leftover of an endpoint no record has.
    await h.service.stop();
    await inNs(h.ns, 'iptables', '-t', 'nat', '-F', 'WEAVE-PORTS');
    const leftover = 'weave-port:wvb00000000000/wvh00000000000';
    await inNs(h.ns, 'iptables', '-t', 'nat', '-A', 'WEAVE-PORTS', '-p', 'tcp', '-m', 'tcp', '--dport', '7070', '-m', 'comment', '--comment', leftover, '-j', 'DNAT', '--to-destination', '10.77.0.9:70');
    expect(await ask(outside, 'tcp', OUTSIDE.host, 8080)).toBe('ECONNREFUSED');
    const restarted = await h.start();
    expect(await ask(outside, 'tcp', OUTSIDE.host, 8080)).toBe(`a tcp from ${OUTSIDE.client}`);
    expect((await portRules(h.ns)).some((r) => r.includes(leftover))).toBe(false);

    // Docker forgot to revoke: deleting the endpoint takes its rules.
    await restarted.netwire.deleteEndpoint(a.ref);
    expect(await portRules(h.ns)).toEqual([]);
  });
});
