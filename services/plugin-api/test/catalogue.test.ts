import { jetstreamManager } from '@nats-io/jetstream';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { openBucket } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';
import { Catalogue } from '../src/catalogue/catalogue';
import { FakeDockerEngine } from '../src/catalogue/docker-engine-fake';

/** Three hosts' catalogues on one real nats-server, each over its own fake Docker engine. */
let server: NatsServer;
let nc: NatsConnection;
const running: Catalogue[] = [];
type Seen = { kind: string; data: { name: string; reason?: string } };

async function host(name: string, resyncMs = 200) {
  const engine = new FakeDockerEngine();
  const seen: Seen[] = [];
  const cat = new Catalogue({
    host: name,
    driver: 'weave',
    engine,
    kv: await openBucket(nc, Buckets.catalogue),
    events: { publish: (kind: string, data: Seen['data']) => seen.push({ kind, data }) } as never,
    log: silentLogger(),
    resyncMs,
  });
  await cat.start();
  running.push(cat);
  return { engine, seen, cat };
}

beforeEach(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});
afterEach(async () => {
  for (const c of running.splice(0)) await c.stop();
  await nc?.close();
  await server?.stop();
});

const net = (name: string) => ({ name, subnets: [{ subnet: '10.40.0.0/24', ipRange: null, gateway: null }], internal: false, ipv6: false, options: {}, labels: {} });

test('a network created on one host appears on the others, and a late host catches up', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  h1.engine.userCreates(net('weave:foo'));
  await waitFor(() => h2.engine.nets.has('weave:foo'), { what: 'weave:foo on h2', timeoutMs: 2000 });
  expect(h2.engine.nets.get('weave:foo')?.subnets).toEqual(net('weave:foo').subnets);
  expect(h2.seen.map((s) => s.kind)).toContain('network.replicated');
  const h3 = await host('h3');
  expect(h3.engine.nets.has('weave:foo')).toBe(true);
});

test('removing it on one host removes it everywhere, once no host has containers on it', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  h1.engine.userCreates(net('weave:bar'));
  await waitFor(() => h2.engine.nets.has('weave:bar'), { what: 'weave:bar on h2' });
  h2.engine.nets.get('weave:bar')!.containers = 1;
  h1.engine.userRemoves('weave:bar');
  await waitFor(() => h2.seen.some((s) => s.kind === 'network.conflict'), { what: 'h2 to report its containers' });
  expect(h2.seen.find((s) => s.kind === 'network.conflict')?.data.reason).toMatch(/1 container\(s\) still use it/);
  expect(h2.engine.nets.has('weave:bar')).toBe(true);
  h2.engine.nets.get('weave:bar')!.containers = 0;
  await waitFor(() => !h2.engine.nets.has('weave:bar'), { what: 'h2 to remove weave:bar once it is unused' });
  // Removal is not undone by anyone republishing it.
  await h1.cat.trigger();
  await h2.cat.trigger();
  expect(h1.engine.nets.has('weave:bar') || h2.engine.nets.has('weave:bar')).toBe(false);
});

test('the same name made differently on two hosts is reported, not overwritten', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  h2.engine.userCreates({ ...net('weave:baz'), subnets: [{ subnet: '10.41.0.0/24', ipRange: null, gateway: null }] });
  h1.engine.userCreates(net('weave:baz'));
  await waitFor(() => [...h1.seen, ...h2.seen].some((s) => s.kind === 'network.conflict'), { what: 'a conflict report' });
  expect(h1.engine.nets.get('weave:baz')?.subnets[0]?.subnet).toBe('10.40.0.0/24');
  expect(h2.engine.nets.get('weave:baz')?.subnets[0]?.subnet).toBe('10.41.0.0/24');
});

test('a name reused after removal is a new network', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  h1.engine.userCreates(net('weave:qux'));
  await waitFor(() => h2.engine.nets.has('weave:qux'), { what: 'weave:qux on h2' });
  h1.engine.userRemoves('weave:qux');
  await waitFor(() => !h2.engine.nets.has('weave:qux'), { what: 'weave:qux gone from h2' });
  h2.engine.userCreates({ ...net('weave:qux'), created: new Date(Date.now() + 1000).toISOString() });
  await waitFor(() => h1.engine.nets.has('weave:qux'), { what: 'the new weave:qux on h1' });
});

test('a network removed here, its destroy event not yet handled, is removed everywhere, not copied back', async () => {
  const [h1, h2] = [await host('h1'), await host('h2')];
  h1.engine.userCreates(net('weave:gone'));
  await waitFor(() => h2.engine.nets.has('weave:gone'), { what: 'weave:gone on h2' });
  await h2.cat.trigger(); // h2 has seen it here
  h2.engine.nets.delete('weave:gone'); // `docker network rm`, the event still on its way
  await h2.cat.trigger();
  expect(h2.engine.nets.has('weave:gone')).toBe(false);
  await waitFor(() => !h1.engine.nets.has('weave:gone'), { what: 'h1 to follow the removal' });
});

describe('the catalogue watch', () => {
  // No periodic pass within these tests: only the watch, reopened, can bring the network over.
  const noResync = 60_000;

  test('reopens when its consumer is deleted, and catches up with what changed meanwhile', async () => {
    const [h1, h2] = [await host('h1', noResync), await host('h2', noResync)];
    const jsm = await jetstreamManager(nc);
    const stream = `KV_${Buckets.catalogue}`;
    for await (const c of jsm.consumers.list(stream)) await jsm.consumers.delete(stream, c.name);
    h1.engine.userCreates(net('weave:meanwhile'));
    await waitFor(() => h2.engine.nets.has('weave:meanwhile'), { what: 'weave:meanwhile on h2 through the reopened watch', timeoutMs: 5000 });
    h1.engine.userCreates({ ...net('weave:after'), subnets: [{ subnet: '10.42.0.0/24', ipRange: null, gateway: null }] });
    await waitFor(() => h2.engine.nets.has('weave:after'), { what: 'weave:after on h2', timeoutMs: 2000 });
  });

  test('reopens after nats-server restarts', async () => {
    const [h1, h2] = [await host('h1', noResync), await host('h2', noResync)];
    await server.kill();
    await server.restart();
    h1.engine.userCreates(net('weave:restarted'));
    await waitFor(() => h2.engine.nets.has('weave:restarted'), { what: 'weave:restarted on h2 after the restart', timeoutMs: 15_000 });
  }, 30_000);
});
