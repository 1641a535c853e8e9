import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthorizationError, connect } from '@nats-io/transport-node';
import { CLUSTER_SECRET_FILE, NATS_CLIENT_SECRET_FILE, readNatsCredentials } from '@weave/config';
import { containerIp, docker, dockerResult, pluginAnswers } from '@weave/docker-cli';
import { freePort, waitFor } from '@weave/testing';
import { composePids, DockerScope, E2E_ENV, isLoopback, Listener, listenersOf, ProcessStack, removeFastPathGuards, weaveLinks } from '../src';

const root = join(__dirname, '..', '..', '..');

describe('a compose file that uses weave networks', () => {
  let stack: ProcessStack;
  const dir = mkdtempSync(join(tmpdir(), 'weave-compose-'));
  const project = `wte2e${randomBytes(3).toString('hex')}`;
  const file = join(dir, 'compose.yml');
  beforeAll(async () => {
    stack = await new ProcessStack(E2E_ENV).start();
    writeFileSync(
      file,
      `services:
  a:
    image: weave-bbox:local
    command: sleep 1d
    networks: { foo: { ipv4_address: 10.251.30.10 } }
  b:
    image: weave-bbox:local
    command: sleep 1d
    networks: [foo]
networks:
  foo:
    driver: ${stack.plugin}
    ipam: { driver: ${stack.plugin}, config: [{ subnet: 10.251.30.0/24 }] }
`,
    );
  });
  afterAll(async () => {
    await dockerResult(['compose', '-p', project, '-f', file, 'down', '-t', '0']);
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('up gives the fixed address and connectivity; down removes everything', async () => {
    await docker(['compose', '-p', project, '-f', file, 'up', '-d']);
    const net = `${project}_foo`;
    expect(await containerIp(`${project}-a-1`, net)).toBe('10.251.30.10');
    expect(await docker(['exec', `${project}-b-1`, 'ping', '-c', '2', '-W', '2', '10.251.30.10'])).toMatch(/2 packets received/);
    await docker(['compose', '-p', project, '-f', file, 'down', '-t', '0']);
    expect((await dockerResult(['network', 'inspect', net])).ok).toBe(false);
    expect((await stack.netwire.status({})).networks).toEqual([]);
    expect((await stack.ipam.status({})).pools).toEqual([]);
  });
});

describe('installing with compose/host.yml', () => {
  const project = `wte2e${randomBytes(3).toString('hex')}`;
  const plugin = `wtc${randomBytes(3).toString('hex')}`;
  const scope = new DockerScope();
  const composeFile = join(root, 'compose/host.yml');
  // Where /var/lib/weave would be; not there yet, as on a fresh host.
  const tmp = mkdtempSync(join(tmpdir(), 'weave-compose-secrets-'));
  const secrets = join(tmp, 'weave');
  const credsFile = join(secrets, NATS_CLIENT_SECRET_FILE);
  let env: NodeJS.ProcessEnv;
  let ports: { nats: number; router: number; probe: number; cluster: number; monitor: number };
  let linksBefore: string[];
  let firstCreds: string;
  const compose = (...args: string[]) => docker(['compose', '-p', project, '-f', composeFile, ...args], { timeoutMs: 300_000 });

  beforeAll(async () => {
    linksBefore = weaveLinks();
    ports = { nats: await freePort(), router: await freeUdpPort(), probe: await freeUdpPort(), cluster: await freePort(), monitor: await freePort() };
    env = {
      WEAVE_PLUGIN_NAME: plugin,
      WEAVE_HOST: `e2e-${plugin}`,
      WEAVE_NATS_PORT: String(ports.nats),
      WEAVE_ROUTER_PORT: String(ports.router),
      WEAVE_PROBE_PORT: String(ports.probe),
      WEAVE_NATS_CLUSTER_PORT: String(ports.cluster),
      WEAVE_NATS_MONITOR_PORT: String(ports.monitor),
      WEAVE_SECRETS_DIR: secrets,
      WEAVE_BASE_IMAGE: process.env.WEAVE_BASE_IMAGE ?? 'weave-base:local',
      ...E2E_ENV,
    };
    Object.assign(process.env, env);
  });
  afterAll(async () => {
    await scope.cleanup();
    await dockerResult(['compose', '-p', project, '-f', composeFile, 'down', '-v', '-t', '5']);
    // The router keeps its fast-path guard when it stops; with the stack gone it is a leftover.
    await removeFastPathGuards();
    for (const k of [...Object.keys(env ?? {}), 'WEAVE_PEERS']) delete process.env[k];
    rmSync(tmp, { recursive: true, force: true });
  });

  test('up -d brings a working plugin; containers on one of its networks talk', async () => {
    await compose('up', '-d', '--build', '--quiet-pull');
    await waitFor(() => pluginAnswers(`/run/docker/plugins/${plugin}.sock`), { what: 'the composed plugin to answer', timeoutMs: 60_000 });
    const net = await scope.network(plugin);
    const a = await scope.run([`--net=${net}`]);
    const b = await scope.run([`--net=${net}`]);
    expect(await docker(['exec', a, 'ping', '-c', '2', '-W', '2', await containerIp(b, net)])).toMatch(/2 packets received/);
    // The CLI ships in the images and sees the same state (with the stack's NATS credentials).
    const status = await compose('exec', '-T', 'plugin-api', 'weave', 'status', '--json');
    expect(JSON.parse(status).netwire.endpoints).toHaveLength(2);
    await scope.cleanup();
  });

  test('the install made root-only NATS credentials, and NATS lets no one in without them', async () => {
    expect(ownerAndMode(secrets)).toEqual({ uid: 0, mode: 0o700 });
    expect(ownerAndMode(credsFile)).toEqual({ uid: 0, mode: 0o600 });
    firstCreds = readFileSync(credsFile, 'utf8');
    const url = `nats://127.0.0.1:${ports.nats}`;
    await expect(connect({ servers: url })).rejects.toBeInstanceOf(AuthorizationError);
    const { user, password } = readNatsCredentials(credsFile);
    const nc = await connect({ servers: url, user, pass: password });
    await nc.close();
  });

  test('the plugin socket is root-only (Docker, which runs as root, is its one client)', () => {
    expect(ownerAndMode(`/run/docker/plugins/${plugin}.sock`)).toEqual({ uid: 0, mode: 0o600 });
  });

  test("on one host nothing listens beyond loopback but the router's data port (and its fast-path probe, inside VXLAN) and weave DNS on the networks' gateways", async () => {
    const net = await scope.network(plugin);
    const gateways = weaveGateways();
    expect(gateways.length).toBeGreaterThan(0);
    const listeners = await waitFor(
      async () => {
        const l = listenersOf(await composePids(project, composeFile));
        // All there: the scan sees the stack (nats on loopback, the router on every address, DNS on the gateway).
        const dns = l.filter((x) => x.port === 53 && gateways.includes(x.address));
        return l.some((x) => x.port === ports.nats) && l.some((x) => x.port === ports.router) && dns.length === 2 * gateways.length ? l : null;
      },
      { what: "nats' client port, the router's data port and weave DNS on every gateway", timeoutMs: 30_000 },
    );
    // Weave DNS, UDP and TCP, only on addresses of weave bridges: its networks' containers reach it, the underlay does not.
    const dns = (l: (typeof listeners)[number]) => l.port === 53 && gateways.includes(l.address);
    expect(listeners.filter((l) => l.port === 53).every(dns)).toBe(true);
    expect(listeners.filter((l) => !isLoopback(l.address)).map(({ proto, port }) => ({ proto, port }))).toEqual(
      expect.arrayContaining([{ proto: 'udp', port: ports.router }]),
    );
    // The probe's echoes answer on the probe device's link-local address only: reachable through
    // VXLAN, which the router's guard lets in from the mesh's peers alone.
    const probe = (l: (typeof listeners)[number]) => l.proto === 'udp' && l.port === ports.probe && /^fe80:/i.test(l.address);
    expect(listeners.filter((l) => !isLoopback(l.address) && !(l.proto === 'udp' && l.port === ports.router) && !probe(l) && !dns(l))).toEqual([]);
    expect(listeners.filter((l) => l.commands.includes('nats-server')).map(where)).toEqual([`tcp 127.0.0.1:${ports.nats}`]);
    expect(net).toMatch(/^weave:/);
    await scope.cleanup();
  });

  test('with peers, up refuses to start without a cluster secret; with one, NATS adds only its cluster port and loopback monitoring', async () => {
    // TEST-NET-1: never answers, so this host stays alone while its listeners are checked.
    process.env.WEAVE_PEERS = '192.0.2.1';
    const refused = await dockerResult(['compose', '-p', project, '-f', composeFile, 'up', '-d'], { timeoutMs: 300_000 });
    // Compose names the service that failed; its log says why and what to do.
    expect(refused.ok ? 'up succeeded' : refused.err.stderr).toMatch(/secrets.*didn't complete successfully/);
    expect(await compose('logs', '--no-log-prefix', 'secrets')).toMatch(/WEAVE_PEERS is set but there is no cluster secret.*openssl rand -hex 32/);

    writeFileSync(join(secrets, CLUSTER_SECRET_FILE), `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    await compose('up', '-d');
    const cluster = await waitFor(
      async () => {
        const l = listenersOf(await composePids(project, composeFile)).filter((x) => x.commands.includes('nats-server'));
        return l.some((x) => x.port === ports.cluster) && l.some((x) => x.port === ports.monitor) ? l : null;
      },
      { what: "nats' cluster and monitoring ports", timeoutMs: 30_000 },
    );
    // Every address: the other hosts reach it over the underlay (nats-server binds :: for 0.0.0.0).
    expect(cluster.map(where).sort()).toEqual([`tcp *:${ports.cluster}`, `tcp 127.0.0.1:${ports.monitor}`, `tcp 127.0.0.1:${ports.nats}`].sort());
    // The credentials made at install were kept through a second run of the `secrets` service.
    expect(readFileSync(credsFile, 'utf8')).toBe(firstCreds);
  });

  test('down leaves nothing of the stack (the secrets stay, for the next install)', async () => {
    await compose('down', '-v', '-t', '5');
    expect(weaveLinks()).toEqual(linksBefore);
    expect(existsSync(`/run/docker/plugins/${plugin}.sock`)).toBe(false);
    expect(existsSync(credsFile)).toBe(true);
  });
});

/** `proto address:port`, with `*` for the wildcard addresses (0.0.0.0 and ::). */
function where(l: Listener): string {
  const a = l.address === '0.0.0.0' || l.address === '::' ? '*' : l.address.includes(':') ? `[${l.address}]` : l.address;
  return `${l.proto} ${a}:${l.port}`;
}

function ownerAndMode(path: string): { uid: number; mode: number } {
  const st = statSync(path);
  return { uid: st.uid, mode: st.mode & 0o777 };
}

function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The IPv4 addresses of this machine's weave bridges (their networks' gateways). */
function weaveGateways(): string[] {
  const links = JSON.parse(execFileSync('ip', ['-j', '-4', 'addr', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string; addr_info?: Array<{ local: string }> }>;
  return links.filter((l) => l.ifname.startsWith('wvb')).flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
}
