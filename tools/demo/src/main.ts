import { containerIp, docker, dockerResult, pluginAnswers } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';

/**
 * What `npm start` shows once the stack is up: a weave network and two containers on it that
 * reach each other. Idempotent; `--remove` takes the demo away again.
 */
const NETWORK = 'weave:demo';
const CONTAINERS = ['weave-demo-1', 'weave-demo-2'];
const IMAGE = process.env.WEAVE_DEMO_IMAGE ?? 'weave-bbox:local';
const SOCKET = `/run/docker/plugins/${process.env.WEAVE_PLUGIN_NAME ?? 'weave'}.sock`;
const say = (m: string) => console.log(`[weave] ${m}`);

async function show(): Promise<void> {
  await waitFor(() => pluginAnswers(SOCKET), { what: `the weave plugin to answer on ${SOCKET}`, timeoutMs: 60_000, intervalMs: 250 });
  say(`plugin answering on ${SOCKET}`);
  if (!(await dockerResult(['network', 'inspect', NETWORK])).ok) {
    await docker(['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', NETWORK]);
    say(`created network ${NETWORK}`);
  }
  for (const name of CONTAINERS) {
    const running = await dockerResult(['inspect', '-f', '{{.State.Running}}', name]);
    if (running.ok && running.out === 'true') continue;
    await dockerResult(['rm', '-f', name]);
    await docker(['run', '-d', '--name', name, '--hostname', name, `--net=${NETWORK}`, IMAGE, 'sleep', '1d']);
  }
  const [a, b] = await Promise.all(CONTAINERS.map((c) => containerIp(c, NETWORK)));
  say(`${CONTAINERS[0]} has ${a}, ${CONTAINERS[1]} has ${b} on ${NETWORK}`);
  say(`${CONTAINERS[0]} pings ${CONTAINERS[1]}:`);
  console.log(await docker(['exec', CONTAINERS[0]!, 'ping', '-c', '3', '-W', '2', b!]));
  say('try it yourself:');
  console.log(`  docker run --rm --net=${NETWORK} ${IMAGE} ping -c 2 ${a}`);
  console.log('  npx weave events          # every change, live, from NATS');
  console.log('  npm stop                  # takes the demo and the stack down');
}

async function remove(): Promise<void> {
  for (const name of CONTAINERS) await dockerResult(['rm', '-f', name]);
  const rm = await dockerResult(['network', 'rm', NETWORK]);
  if (rm.ok) say(`removed ${NETWORK} and the demo containers`);
}

(process.argv.includes('--remove') ? remove() : show()).catch((e: Error) => {
  console.error(`[weave] demo failed: ${e.message}`);
  process.exit(1);
});
