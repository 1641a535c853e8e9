import { connect, NatsConnection } from '@nats-io/transport-node';
import { rpcClient, subscribeEvents } from '@weave/bus';
import { EventEnvelope, routerRpc, Subjects } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';
import { Sleeve } from '@weave/sleeve';
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
