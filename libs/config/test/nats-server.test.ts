import { get } from 'node:http';
import { Kvm } from '@nats-io/kv';
import { AuthorizationError, connect } from '@nats-io/transport-node';
import { freePort, NatsServer, startNatsServer, waitFor } from '@weave/testing';
import { generateNatsCredentials, NatsServerEnv, natsServerConfig, planNatsServer, readEnv } from '../src';

/**
 * The configuration the weave-nats image writes (compose/nats/entrypoint.ts), run by real
 * nats-servers: the clients' credentials, and the cluster routes' secret between servers.
 */
const SECRET = 'f'.repeat(64);
const OTHER_SECRET = 'e'.repeat(64);

const servers: NatsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

describe('one host', () => {
  test('clients must bring the credentials; with them JetStream works; no cluster port, no monitoring', async () => {
    const credentials = generateNatsCredentials();
    let conf = '';
    const server = await startNatsServer({
      config: ({ port, storeDir }) => {
        const plan = planNatsServer(readEnv(NatsServerEnv, { WEAVE_NATS_PORT: String(port) }), { machineId: null, credentials, clusterSecret: null, storeDir });
        return (conf = natsServerConfig(plan));
      },
    });
    servers.push(server);
    expect(JSON.parse(conf)).toEqual({ server_name: 'weave-host', listen: `127.0.0.1:${server.port}`, jetstream: expect.any(Object), authorization: expect.any(Object) });

    await expect(connect({ servers: server.url })).rejects.toBeInstanceOf(AuthorizationError);
    await expect(connect({ servers: server.url, user: credentials.user, pass: 'x'.repeat(64) })).rejects.toBeInstanceOf(AuthorizationError);
    const nc = await connect({ servers: server.url, user: credentials.user, pass: credentials.password });
    try {
      const kv = await new Kvm(nc).create('weave-test');
      await kv.put('k', 'v');
      expect((await kv.get('k'))?.string()).toBe('v');
    } finally {
      await nc.close();
    }
  });

  test('peers without a cluster secret are refused, saying how to make one', () => {
    const env = readEnv(NatsServerEnv, { WEAVE_HOST: 'h1', WEAVE_PEERS: '192.0.2.2' });
    expect(() => planNatsServer(env, { machineId: null, credentials: null, clusterSecret: null })).toThrow(
      /WEAVE_PEERS is set but there is no cluster secret.*openssl rand -hex 32.*\/var\/lib\/weave\/cluster.secret/,
    );
  });

  test('route URLs carry the derived route credentials, never the secret', () => {
    const env = readEnv(NatsServerEnv, { WEAVE_HOST: 'h1', WEAVE_PEERS: '192.0.2.2, 192.0.2.3:7222 [2001:db8::1]' });
    const plan = planNatsServer(env, { machineId: null, credentials: null, clusterSecret: SECRET });
    expect(plan.cluster?.routes).toEqual([
      expect.stringMatching(/^nats-route:\/\/weave-route:[0-9a-f]{64}@192\.0\.2\.2:6222$/),
      expect.stringMatching(/@192\.0\.2\.3:7222$/),
      expect.stringMatching(/@\[2001:db8::1\]:6222$/),
    ]);
    expect(natsServerConfig(plan)).not.toContain(SECRET);
    expect(JSON.parse(natsServerConfig(plan))).toMatchObject({ http: '127.0.0.1:8222', cluster: { listen: '0.0.0.0:6222', no_advertise: true } });
  });
});

describe('a mesh of three nats-servers', () => {
  interface Member {
    name: string;
    clusterPort: number;
    monitorPort: number;
  }
  const member = async (name: string): Promise<Member> => ({ name, clusterPort: await freePort(), monitorPort: await freePort() });

  /** A server as a host of the mesh runs it, routing to `peers`, with cluster `secret`. */
  async function start(m: Member, peers: Member[], secret: string): Promise<NatsServer> {
    const server = await startNatsServer({
      config: ({ port, storeDir }) => {
        const env = readEnv(NatsServerEnv, {
          WEAVE_HOST: m.name,
          WEAVE_NATS_PORT: String(port),
          WEAVE_PEERS: peers.map((p) => `127.0.0.1:${p.clusterPort}`).join(','),
          WEAVE_NATS_CLUSTER_PORT: String(m.clusterPort),
          WEAVE_NATS_MONITOR_PORT: String(m.monitorPort),
        });
        const plan = planNatsServer(env, { machineId: null, credentials: generateNatsCredentials(), clusterSecret: secret, storeDir, clusterHost: '127.0.0.1' });
        return natsServerConfig(plan);
      },
    });
    servers.push(server);
    return server;
  }

  test('servers with the shared secret form one cluster; a server with another secret is refused until it has the right one', async () => {
    const all = await Promise.all(['a', 'b', 'c'].map(member));
    const [a, b, c] = all as [Member, Member, Member];
    const others = (m: Member) => all.filter((x) => x !== m);
    const routedTo = (m: Member) => routesOf(m, others(m));
    const sa = await start(a, others(a), SECRET);
    await start(b, others(b), SECRET);
    let sc = await start(c, others(c), OTHER_SECRET);

    await waitFor(async () => sameSet(await routedTo(a), ['weave-b']) && sameSet(await routedTo(b), ['weave-a']), { what: 'a and b to route to each other', timeoutMs: 20_000 });
    // c has tried both and been turned away (each side logs the refusal): only then is its
    // being alone evidence.
    await waitFor(() => /authentication error/i.test(sa.log()) && /authorization violation/i.test(sc.log()), { what: 'c to be refused by a', timeoutMs: 20_000 });
    expect(await routedTo(c)).toEqual([]);
    expect(await routedTo(a)).toEqual(['weave-b']);

    await sc.stop();
    servers.splice(servers.indexOf(sc), 1);
    sc = await start(c, others(c), SECRET);
    await waitFor(async () => sameSet(await routedTo(c), ['weave-a', 'weave-b']) && sameSet(await routedTo(a), ['weave-b', 'weave-c']), {
      what: 'c, now with the shared secret, to join',
      timeoutMs: 20_000,
    });
  }, 90_000);

  /** The names of the servers among `others` a member has routes to, from monitoring (loopback). */
  async function routesOf(m: Member, others: Member[]): Promise<string[]> {
    const routez = (await httpJson(m.monitorPort, '/routez')) as { routes?: { remote_id: string }[] };
    const ids = new Set((routez.routes ?? []).map((r) => r.remote_id));
    const names: string[] = [];
    for (const x of others) {
      const varz = (await httpJson(x.monitorPort, '/varz').catch(() => null)) as { server_id: string; server_name: string } | null;
      if (varz && ids.has(varz.server_id)) names.push(varz.server_name);
    }
    return names.sort();
  }
});

const sameSet = (x: string[], y: string[]) => x.length === y.length && x.every((v) => y.includes(v));

function httpJson(port: number, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(e);
        }
      });
    }).on('error', reject);
  });
}
