import { createSocket, Socket } from 'node:dgram';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { rpcClient, subscribeEvents } from '@weave/bus';
import { EventEnvelope, routerRpc, Subjects } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';
import { Sleeve } from '@weave/sleeve';
import { peerIdOf } from '../src/peer-id';
import { RunningRouter, sleeveIdentity, startRouter } from '../src/service';

/** Routers for three hosts on one real nats-server, with fast heartbeats. */
let server: NatsServer;
let nc: NatsConnection;
const routers = new Map<string, RunningRouter>();
const seen: EventEnvelope[] = [];

/** A real sleeve on loopback; with no netwire answering it carries no network. */
function sleeveFor(host: string): Sleeve {
  const sleeve = new Sleeve(sleeveIdentity(host, '127.0.0.1', 0));
  sleeve.start();
  return sleeve;
}
const start = async (host: string, i: number) =>
  routers.set(
    host,
    await startRouter({
      nc,
      host,
      log: silentLogger(),
      address: `10.254.254.${i}`,
      port: 6784,
      heartbeatMs: 50,
      peerTimeoutMs: 300,
      sleeve: sleeveFor(host),
      sleeveListen: { host: '127.0.0.1', port: 0 },
      pathMtu: async () => 1436,
    }),
  );
const connected = async (from: string) => (await rpcClient(nc, from, routerRpc).status({})).peers.filter((p) => p.state === 'connected').map((p) => p.host);

beforeEach(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  subscribeEvents(nc, (e) => seen.push(e), () => undefined);
  seen.length = 0;
});
afterEach(async () => {
  for (const r of routers.values()) await r.stop();
  routers.clear();
  await nc?.close();
  await server?.stop();
});

test('routers find each other, and a stopped one is gone at once', async () => {
  await start('h1', 1);
  await start('h2', 2);
  await start('h3', 3);
  for (const h of ['h1', 'h2']) await waitFor(async () => (await connected(h)).length === 2, { what: `${h} to see both others` });
  expect((await rpcClient(nc, 'h2', routerRpc).status({})).peers.map((p) => [p.host, p.address])).toEqual([['h1', '10.254.254.1'], ['h3', '10.254.254.3']]);
  await routers.get('h3')!.stop();
  routers.delete('h3');
  await waitFor(async () => (await connected('h1')).join() === 'h2', { what: 'h1 to lose h3' });
  expect(seen.some((e) => e.host === 'h1' && e.kind === 'peer.disconnected' && (e.data as { reason: string }).reason === 'left')).toBe(true);
});

test('a silent peer times out, and garbage on the presence subject changes nothing', async () => {
  await start('h1', 1);
  nc.publish(Subjects.presence('ghost'), JSON.stringify({ host: 'ghost', boot: '0123456789abcdef', address: '10.254.254.9', port: 6784, leaving: false }));
  nc.publish(Subjects.presence('junk'), 'not json');
  nc.publish(Subjects.presence('junk'), JSON.stringify({ host: 'junk', boot: 'x' }));
  await waitFor(async () => (await connected('h1')).join() === 'ghost', { what: 'h1 to see the ghost' });
  await waitFor(async () => (await connected('h1')).length === 0, { what: 'the ghost to time out' });
  const gone = seen.find((e) => e.kind === 'peer.disconnected');
  expect(gone?.data).toEqual({ peer: 'ghost', reason: 'timeout' });
});

/** A UDP socket on loopback, bound to a free port. */
async function udp(): Promise<Socket & { port: number }> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return Object.assign(s, { port: s.address().port });
}
const send = (s: Socket, bytes: Buffer, port: number) => new Promise<void>((r, j) => s.send(bytes, port, '127.0.0.1', (e) => (e ? j(e) : r())));

test('hostile datagrams, from a stranger or cut short by a peer, are dropped and counted; the router carries on', async () => {
  // The router's sleeve on a port of its own on loopback; "h2" is a peer whose socket the test holds.
  const probe = await udp();
  const port = probe.port;
  probe.close();
  const sleeve = new Sleeve(sleeveIdentity('h1', '127.0.0.1', port));
  sleeve.start();
  routers.set('h1', await startRouter({ nc, host: 'h1', log: silentLogger(), address: '127.0.0.1', port, heartbeatMs: 50, peerTimeoutMs: 2000, sleeve, pathMtu: async () => 1436 }));
  const peer = await udp();
  const stranger = await udp();
  try {
    const announce = () => nc.publish(Subjects.presence('h2'), JSON.stringify({ host: 'h2', boot: '0123456789abcdef', address: '127.0.0.1', port: peer.port, leaving: false }));
    const status = () => rpcClient(nc, 'h1', routerRpc).status({});
    announce();
    await waitFor(async () => (await status()).peers.some((p) => p.host === 'h2' && p.state === 'connected' && p.path === 'sleeve'), { what: 'h2 as a sleeve peer of h1' });

    // A valid header from h2 announcing a frame that is not there, and a few shorter cuts.
    const header = Buffer.alloc(20);
    header.write('WV', 0, 'latin1');
    header[2] = 1;
    header.writeUInt32BE(7, 4);
    header.writeBigUInt64BE(peerIdOf('h2'), 8);
    header.writeUInt16BE(1, 16);
    await send(peer, header, port);
    await send(peer, Buffer.concat([header, Buffer.from([0x05, 0xdc, 1, 2, 3])]), port);
    await send(peer, header.subarray(0, 9), port);
    for (let i = 0; i < 20; i++) await send(stranger, Buffer.from(`garbage ${i}`), port);

    const counted = await waitFor(
      async () => {
        const c = (await status()).sleeve;
        return c.dropUnknownPeer === '20' && c.malformedTruncated === '2' && c.malformedShortHeader === '1' ? c : null;
      },
      { what: 'the sleeve to count 20 stranger datagrams, 2 truncated and 1 short one' },
    );
    expect(counted.framesFromPeers).toBe('0');
    expect(counted.datagramsIn).toBe('23');
    // Still serving: the peer is still there and status answers.
    announce();
    expect((await status()).peers.find((p) => p.host === 'h2')?.state).toBe('connected');
  } finally {
    peer.close();
    stranger.close();
  }
});
