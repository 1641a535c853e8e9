import { docker, dockerResult } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { captureUnderlay, hostAddress, hostDocker, hostName, hostUnderlayMac, inContainerNet, meshDown, meshUp, presentHosts, sendAs, weaveCli, withIntruder } from '../src/mesh';

/**
 * An encrypted mesh: hosts 1 and 2 share a password, host 3 has another. Frames cross between 1
 * and 2 only encrypted (no known payload shows on the underlay, a replayed datagram is dropped),
 * and host 3 gets nothing through, which every side's status says plainly. One mesh for the file.
 */
const PASSWORD = 'correct horse battery staple';
const OTHER = 'a different password';
const SUBNET = '10.252.9.0/24';
const NET = 'weave:sealed';
const SLEEVE_PORT = 6784;
const log = (m: string) => process.stderr.write(`[mesh:encrypted] ${m}\n`);
let owned = false;
/** A transport datagram host 1 sent host 2, kept from the capture for the replay. */
let sent12: Buffer | undefined;

beforeAll(async () => {
  const present = presentHosts();
  if (present.length) throw new Error(`simulated hosts ${present.join(', ')} already exist: tools/mesh down first`);
  owned = true;
  await meshUp({ hosts: 3, log, passwords: { 1: PASSWORD, 2: PASSWORD, 3: OTHER } });
  await on(1, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', SUBNET, NET]);
  for (const n of [2, 3]) await waitFor(async () => (await dockerResult(['network', 'inspect', NET], { host: hostDocker(n) })).ok || null, { what: `${NET} on ${hostName(n)}`, timeoutMs: 10_000 });
  for (const n of [1, 2, 3]) await on(n, ['run', '-d', '--name', `e${n}`, '--net', NET, 'weave-bbox:local', 'sleep', '1d']);
}, 300_000);

afterAll(async () => {
  if (owned) await meshDown({ log });
}, 180_000);

const on = (n: number, args: string[]) => docker(args, { host: hostDocker(n), timeoutMs: 60_000 });
const ipOf = (n: number) => on(n, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, `e${n}`]);
const pings = async (n: number, to: string): Promise<boolean> => (await dockerResult(['exec', `e${n}`, 'ping', '-c', '1', '-W', '1', to], { host: hostDocker(n) })).ok;

interface Peer {
  host: string;
  path: string | null;
  pathReason?: string | null;
  encryption?: string | null;
}
interface Status {
  router: { peers: Peer[]; sleeve: Record<string, string> };
  netwire: { networks: Array<{ subnets: string[]; mtu: number }> };
  problems: string[];
}
const status = async (n: number): Promise<Status> => JSON.parse(await weaveCli(n, ['status', '--json'])) as Status;
const peerOf = async (n: number, m: number): Promise<Peer | undefined> => (await status(n)).router.peers.find((p) => p.host === hostName(m));
const counter = async (n: number, name: string): Promise<bigint> => BigInt((await status(n)).router.sleeve[name] ?? '0');

test('hosts with one password talk over the encrypted sleeve, with room for it in the MTU and the fast path off', async () => {
  await waitFor(async () => (await peerOf(1, 2))?.encryption === 'established' || null, { what: 'a session between hosts 1 and 2', timeoutMs: 15_000 });
  const p = (await peerOf(1, 2))!;
  expect(p.path).toBe('sleeve');
  expect(p.pathReason).toMatch(/encryption/);
  // 1500 on the underlay, less the sleeve's 64 and the AEAD's 32.
  expect((await status(1)).netwire.networks.find((n) => n.subnets.includes(SUBNET))!.mtu).toBe(1404);
  expect(await pings(1, await ipOf(2))).toBe(true);
}, 60_000);

test('a capture of the underlay shows no plaintext of a known payload', async () => {
  const payload = `weave-known-payload-${process.pid}`;
  const to = await ipOf(2);
  const datagrams = await captureUnderlay(SLEEVE_PORT, async () => {
    const receiver = inContainerNet(2, 'e2', process.execPath, ['-e', `const s = require('node:dgram').createSocket('udp4'); s.on('message', (m) => { console.log(String(m)); process.exit(0); }); s.bind(7002); setTimeout(() => process.exit(3), 15000);`]);
    const sender = inContainerNet(1, 'e1', process.execPath, ['-e', `const s = require('node:dgram').createSocket('udp4'); const t = setInterval(() => s.send('${payload}', 7002, '${to}'), 100); setTimeout(() => (clearInterval(t), s.close()), 3000);`]);
    const [got] = await Promise.all([receiver, sender]);
    expect(got.stdout.trim()).toBe(payload); // it did cross, so the capture saw it cross
  });
  const payloads = datagrams.map((d) => d.payload);
  log(`${payloads.length} sleeve datagrams captured`);
  expect(payloads.length).toBeGreaterThan(0);
  expect(payloads.filter((d) => d.includes(payload))).toEqual([]);
  // Every one is an encrypted message (type 2-4 after the "WV" magic), none a plaintext datagram.
  expect(payloads.filter((d) => !(d[0] === 0x57 && d[1] === 0x56 && d[2]! >= 2 && d[2]! <= 4)).length).toBe(0);
  sent12 = datagrams.find((d) => d.from === hostAddress(1) && d.to === hostAddress(2) && d.payload[2] === 4 && d.payload.length > 32)?.payload;
}, 60_000);

test('a host with another password gets no frame through, and status says why', async () => {
  const before = await counter(3, 'tapFramesOut');
  const e3 = await ipOf(3);
  for (let i = 0; i < 3; i++) expect(await pings(1, e3)).toBe(false);
  expect(await counter(3, 'tapFramesOut')).toBe(before);
  expect(await counter(3, 'handshakesFailed')).toBeGreaterThan(0n);
  await waitFor(async () => (await peerOf(1, 3))?.encryption === 'wrongPassword' || null, { what: "host 1 to see host 3's other password", timeoutMs: 10_000 });
  expect((await status(3)).problems.join('\n') + (await weaveCli(3, ['status']))).toMatch(/host1 has a different password/);
}, 60_000);

test('a replayed datagram is dropped', async () => {
  const e2 = await ipOf(2);
  expect(sent12).toBeDefined(); // from the capture above
  const datagram = sent12;
  const before = await counter(2, 'replaysDropped');
  const mac = await hostUnderlayMac(2);
  await withIntruder((ns) => sendAs(ns, { address: hostAddress(1), port: SLEEVE_PORT }, { address: hostAddress(2), port: SLEEVE_PORT, mac }, datagram!));
  await waitFor(async () => (await counter(2, 'replaysDropped')) > before || null, { what: "host 2's router to drop the replay", timeoutMs: 10_000 });
  expect(await pings(1, e2)).toBe(true);
}, 60_000);
