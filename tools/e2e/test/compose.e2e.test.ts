import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerIp, docker, dockerResult, pluginAnswers } from '@weave/docker-cli';
import { freePort, waitFor } from '@weave/testing';
import { DockerScope, E2E_ENV, ProcessStack, weaveLinks } from '../src';

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
  let env: NodeJS.ProcessEnv;
  let linksBefore: string[];
  const compose = (...args: string[]) => docker(['compose', '-p', project, '-f', join(root, 'compose/host.yml'), ...args], { timeoutMs: 300_000 });

  beforeAll(async () => {
    linksBefore = weaveLinks();
    env = {
      WEAVE_PLUGIN_NAME: plugin,
      WEAVE_HOST: `e2e-${plugin}`,
      WEAVE_NATS_PORT: String(await freePort()),
      WEAVE_BASE_IMAGE: process.env.WEAVE_BASE_IMAGE ?? 'weave-base:local',
      ...E2E_ENV,
    };
    Object.assign(process.env, env);
  });
  afterAll(async () => {
    await scope.cleanup();
    await dockerResult(['compose', '-p', project, '-f', join(root, 'compose/host.yml'), 'down', '-v', '-t', '5']);
    for (const k of Object.keys(env ?? {})) delete process.env[k];
  });

  test('up -d brings a working plugin; containers on one of its networks talk; down leaves nothing', async () => {
    await compose('up', '-d', '--build', '--quiet-pull');
    await waitFor(() => pluginAnswers(`/run/docker/plugins/${plugin}.sock`), { what: 'the composed plugin to answer', timeoutMs: 60_000 });
    const net = await scope.network(plugin);
    const a = await scope.run([`--net=${net}`]);
    const b = await scope.run([`--net=${net}`]);
    expect(await docker(['exec', a, 'ping', '-c', '2', '-W', '2', await containerIp(b, net)])).toMatch(/2 packets received/);
    // The CLI ships in the images and sees the same state.
    const status = await compose('exec', '-T', 'plugin-api', 'weave', 'status', '--json');
    expect(JSON.parse(status).netwire.endpoints).toHaveLength(2);
    await scope.cleanup();
    await compose('down', '-v', '-t', '5');
    expect(weaveLinks()).toEqual(linksBefore);
  });
});
