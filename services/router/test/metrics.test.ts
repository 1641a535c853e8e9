import { createSocket, Socket } from 'node:dgram';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { Subjects } from '@weave/contracts';
import { parseSamples, render, scrape } from '@weave/metrics';
import { freePort, NatsServer, ServiceProcess, startNatsServer, startServiceProcess, waitFor } from '@weave/testing';
import { peerTrafficFamilies, sleeveFamilies } from '../src/metrics';

/**
 * The router as a process (its real entry point, with the real sleeve on loopback) on a real
 * nats-server; a peer is announced on NATS, datagrams are sent to its data port, and /metrics is
 * scraped for what they did.
 */
jest.setTimeout(60_000);

let nats: NatsServer;
let nc: NatsConnection;
let router: ServiceProcess | undefined;
let metricsPort: number;
let dataPort: number;
const sockets: Socket[] = [];

async function udp(): Promise<Socket & { port: number }> {
  const s = createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return Object.assign(s, { port: s.address().port });
}
const send = (s: Socket, text: string) => new Promise<void>((r, j) => s.send(Buffer.from(text), dataPort, '127.0.0.1', (e) => (e ? j(e) : r())));

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  metricsPort = await freePort();
  const probe = await udp();
  dataPort = probe.port;
  probe.close();
  sockets.length = 0;
  router = await startServiceProcess(
    'router',
    {
      WEAVE_HOST: 'h1',
      WEAVE_NATS_URL: nats.url,
      WEAVE_ADVERTISE_ADDR: '127.0.0.1',
      WEAVE_ROUTER_PORT: String(dataPort),
      WEAVE_PEER_TIMEOUT_MS: '60000',
      WEAVE_ROUTER_METRICS_PORT: String(metricsPort),
      // The sleeve's counters are what is scraped; the fast path would leave guard rules and a
      // probe device in the machine's own namespace (off, the router removes any it finds).
      WEAVE_FASTPATH: 'off',
      WEAVE_LOG_LEVEL: 'error',
    },
    async () => (await scrape(metricsPort).catch(() => null))?.status === 200,
  );
});
afterAll(async () => {
  for (const s of sockets) s.close();
  await router?.stop();
  await nc?.close();
  await nats?.stop();
});

const samples = async () => parseSamples((await scrape(metricsPort)).body);
/** Scrapes until `check` holds, and returns that scrape. */
const scrapeUntil = (what: string, check: (s: Record<string, number>) => boolean) =>
  waitFor(async () => {
    const s = await samples();
    return check(s) ? s : null;
  }, { what });

test('peers, their path, and the data path counters by reason change with what arrives', async () => {
  expect(await samples()).toMatchObject({
    'weave_service_info{service="router",host="h1"}': 1,
    'weave_router_peers{state="connected"}': 0,
    'weave_router_datagrams_total{path="sleeve",direction="in"}': 0,
    'weave_router_drops_total{path="sleeve",reason="unknown_peer"}': 0,
  });

  const peer = await udp();
  const presence = (leaving: boolean) => JSON.stringify({ host: 'h2', boot: '0123456789abcdef', address: '127.0.0.1', port: peer.port, leaving });
  nc.publish(Subjects.presence('h2'), presence(false));
  const joined = await scrapeUntil('h2 connected on the sleeve', (s) => s['weave_router_peer_up{peer="h2",path="sleeve"}'] === 1);
  expect(joined['weave_router_peers{state="connected"}']).toBe(1);
  expect(joined['weave_router_peer_mtu_bytes{peer="h2",path="sleeve"}']).toBeGreaterThan(1000);
  expect(joined['weave_router_peer_last_seen_timestamp_seconds{peer="h2"}']).toBeCloseTo(Date.now() / 1000, -2);

  const stranger = await udp();
  for (let i = 0; i < 20; i++) await send(stranger, `garbage ${i}`);
  await send(peer, 'x');
  const counted = await scrapeUntil('20 datagrams from a stranger and a short one from h2', (s) => s['weave_router_datagrams_total{path="sleeve",direction="in"}'] === 21);
  expect(counted).toMatchObject({
    'weave_router_drops_total{path="sleeve",reason="unknown_peer"}': 20,
    'weave_router_drops_total{path="sleeve",reason="malformed_short_header"}': 1,
    'weave_router_bytes_total{path="sleeve",direction="in"}': 20 * 'garbage 0'.length + 10 + 1,
    'weave_router_peer_frames_total{path="sleeve",direction="in"}': 0,
    // Per peer: h2's one-byte datagram, and nothing from the stranger (not a peer).
    'weave_router_peer_traffic_bytes_total{peer="h2",path="sleeve",direction="in"}': 1,
    'weave_router_peer_traffic_frames_total{peer="h2",path="sleeve",direction="in"}': 0,
  });
  expect(Object.keys(counted).filter((k) => k.startsWith('weave_router_peer_traffic_bytes_total'))).toEqual([
    'weave_router_peer_traffic_bytes_total{peer="h2",path="sleeve",direction="out"}',
    'weave_router_peer_traffic_bytes_total{peer="h2",path="sleeve",direction="in"}',
  ]);

  nc.publish(Subjects.presence('h2'), presence(true));
  const left = await scrapeUntil('h2 lost', (s) => s['weave_router_peers{state="lost"}'] === 1);
  expect(left['weave_router_peers{state="connected"}']).toBe(0);
  expect(Object.entries(left).filter(([k]) => k.startsWith('weave_router_peer_up{peer="h2"')).map(([, v]) => v)).toEqual([0]);
});

test('every sleeve counter has a place: directed pairs, drops by reason, and any other under its own name', () => {
  const families = sleeveFamilies({ bytesIn: '5', bytesOut: '18446744073709551615', dropPeerElsewhere: '2', malformedBadMagic: '1', udpRecvErrors: '0', somethingNew: '3' });
  expect(render(families)).toBe(`# HELP weave_router_bytes_total UDP payload bytes sent (out) and received (in)
# TYPE weave_router_bytes_total counter
weave_router_bytes_total{path="sleeve",direction="in"} 5
weave_router_bytes_total{path="sleeve",direction="out"} 18446744073709551615
# HELP weave_router_drops_total Frames and datagrams dropped, by reason (malformed_*: datagrams that are not well-formed sleeve datagrams)
# TYPE weave_router_drops_total counter
weave_router_drops_total{path="sleeve",reason="peer_elsewhere"} 2
weave_router_drops_total{path="sleeve",reason="malformed_bad_magic"} 1
# HELP weave_router_io_errors_total Failed TAP and UDP reads and writes, by operation
# TYPE weave_router_io_errors_total counter
weave_router_io_errors_total{path="sleeve",op="udp_recv"} 0
# HELP weave_router_sleeve_something_new_total The sleeve's something_new counter
# TYPE weave_router_sleeve_something_new_total counter
weave_router_sleeve_something_new_total{path="sleeve"} 3
`);
});

test('per-peer traffic: frames and bytes each way, per peer, on the sleeve', () => {
  const t = { bytesTo: '1500', bytesFrom: '18446744073709551615', framesTo: '3', framesFrom: '0' };
  expect(render(peerTrafficFamilies([['h2', t]]))).toBe(`# HELP weave_router_peer_traffic_frames_total Per peer: frames the sleeve sent to it (out; each copy of a flood) and received from it (in)
# TYPE weave_router_peer_traffic_frames_total counter
weave_router_peer_traffic_frames_total{peer="h2",path="sleeve",direction="out"} 3
weave_router_peer_traffic_frames_total{peer="h2",path="sleeve",direction="in"} 0
# HELP weave_router_peer_traffic_bytes_total Per peer: UDP payload bytes the sleeve sent to it (out) and received from it (in), handshakes and keepalives included
# TYPE weave_router_peer_traffic_bytes_total counter
weave_router_peer_traffic_bytes_total{peer="h2",path="sleeve",direction="out"} 1500
weave_router_peer_traffic_bytes_total{peer="h2",path="sleeve",direction="in"} 18446744073709551615
`);
});
