/**
 * tools/mesh: the simulated multi-host mesh (see mesh.ts).
 *   tools/mesh up [--hosts=N] [--no-build] [--no-demo]
 *                                      N simulated hosts (default 3), each with weave's stack (built
 *                                      from this checkout first unless --no-build), then a network
 *                                      with a container per host pinging across (unless --no-demo)
 *   tools/mesh down [--purge]          remove everything (--purge: also the image cache)
 *   tools/mesh status                  hosts, their DOCKER_HOST and their NATS routes
 *   tools/mesh docker <n> <args…>      docker against host n (1-based)
 *   tools/mesh sh <n> [cmd…]           a command in host n's network + mount namespaces
 *   tools/mesh restart <n>             restart host n's stack and dockerd (a reboot of its runtime)
 *   tools/mesh env <n>                 `export DOCKER_HOST=…` for host n
 */
import { spawnSync } from 'node:child_process';
import { hostAddress, hostDocker, hostDockerCli, hostName, hostNs, IMAGE_CACHE, meshDown, meshUp, natsView, presentHosts, restartHost, UNDERLAY_CIDR } from './mesh';

const USAGE = `usage: tools/mesh up [--hosts=N] [--no-build] [--no-demo] | down [--purge] | status | restart <n> | docker <n> <docker args…> | sh <n> [cmd…] | env <n>
  Simulated Docker hosts on this machine (netns wvh<n>, underlay ${UNDERLAY_CIDR}, host n = ${hostAddress(0).replace(/\d+$/, '')}<10+n>).`;

const log = (m: string) => console.error(`[mesh] ${m}`);

function hostArg(v: string | undefined): number {
  const n = Number(v);
  if (!v || !Number.isInteger(n) || n < 1) throw new Error(`host number expected (1-based), got ${JSON.stringify(v)}\n${USAGE}`);
  if (!presentHosts().includes(n)) throw new Error(`${hostName(n)} is not up (tools/mesh up)`);
  return n;
}

/**
 * What `mesh up` shows: one weave network created on host 1, a container on every host, and the
 * first pinging each of the others across the sleeve. Idempotent; `mesh down` takes it away.
 */
async function demo(hosts: number): Promise<void> {
  const net = 'weave:meshdemo';
  const on = (n: number, args: string[]) => hostDockerCli(n, args, { timeoutMs: 60_000 });
  if (!(await on(1, ['network', 'ls', '-q', '--filter', `name=^${net}$`])).trim()) {
    await on(1, ['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', net]);
    log(`created ${net} on ${hostName(1)}`);
  }
  const ips: string[] = [];
  for (let n = 1; n <= hosts; n++) {
    // The catalogue brings the network to the other hosts within a second or two.
    for (let i = 0; !(await on(n, ['network', 'ls', '-q', '--filter', `name=^${net}$`])).trim(); i++) {
      if (i > 100) throw new Error(`${net} did not appear on ${hostName(n)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const name = `meshdemo${n}`;
    if (!(await on(n, ['ps', '-q', '--filter', `name=^${name}$`])).trim()) {
      await on(n, ['rm', '-f', name]).catch(() => '');
      await on(n, ['run', '-d', '--name', name, '--hostname', name, '--net', net, 'weave-bbox:local', 'sleep', '1d']);
    }
    ips.push((await on(n, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name])).trim());
    log(`${name} on ${hostName(n)} has ${ips[n - 1]}`);
  }
  for (let n = 2; n <= hosts; n++) {
    log(`meshdemo1 on ${hostName(1)} pings meshdemo${n} on ${hostName(n)}:`);
    console.log((await on(1, ['exec', 'meshdemo1', 'ping', '-c', '2', '-W', '2', ips[n - 1]!])).trim());
  }
  log(`try: tools/mesh docker 2 run --rm --net ${net} weave-bbox:local ping -c 2 ${ips[0]}`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'up': {
      const flag = rest.find((a) => a.startsWith('--hosts='));
      const bad = rest.find((a) => !a.startsWith('--hosts=') && a !== '--no-build' && a !== '--no-demo');
      if (bad) throw new Error(`unexpected argument ${bad}\n${USAGE}`);
      const hosts = flag ? Number(flag.slice('--hosts='.length)) : Number(process.env.WEAVE_MESH_HOSTS || 3);
      try {
        await meshUp({ hosts, log, build: !rest.includes('--no-build') });
      } catch (e) {
        log(`mesh up failed; what was made is still there for a look (tools/mesh down removes it)`);
        throw e;
      }
      for (let n = 1; n <= hosts; n++) console.log(`${hostName(n)}  ${hostAddress(n)}  DOCKER_HOST=${hostDocker(n)}`);
      if (!rest.includes('--no-demo') && hosts > 1) await demo(hosts);
      return 0;
    }
    case 'down': {
      const bad = rest.find((a) => a !== '--purge');
      if (bad) throw new Error(`unexpected argument ${bad}\n${USAGE}`);
      await meshDown({ log, purgeCache: rest.includes('--purge') });
      if (!rest.includes('--purge')) log(`kept the image cache ${IMAGE_CACHE} (tools/mesh down --purge removes it)`);
      return 0;
    }
    case 'status': {
      const hosts = presentHosts();
      if (!hosts.length) console.log('no simulated hosts');
      const views = await Promise.all(hosts.map((n) => natsView(n).catch((e: Error) => e)));
      const names = new Map(views.flatMap((v) => (v instanceof Error ? [] : [[v.id, v.server] as const])));
      for (const [i, n] of hosts.entries()) {
        const v = views[i]!;
        const nats = v instanceof Error ? `NATS: ${v.message}` : `NATS ${v.server}: routes to ${v.routes.map((r) => names.get(r) ?? r).join(',') || '-'}; JetStream leader ${v.jetstream.leader ?? '-'}`;
        console.log(`${hostName(n)}  ${hostAddress(n)}  DOCKER_HOST=${hostDocker(n)}  ${nats}`);
      }
      return 0;
    }
    case 'docker': {
      const n = hostArg(rest[0]);
      return spawnSync('docker', rest.slice(1), { stdio: 'inherit', env: { ...process.env, DOCKER_HOST: hostDocker(n) } }).status ?? 1;
    }
    case 'sh': {
      const n = hostArg(rest[0]);
      const command = rest.length > 1 ? rest.slice(1) : ['sh'];
      const pid = (await import('node:fs')).readFileSync(`/run/${hostNs(n)}/docker.pid`, 'utf8').trim();
      return spawnSync('nsenter', [`--net=/run/netns/${hostNs(n)}`, `--mount=/proc/${pid}/ns/mnt`, `--wd=${process.cwd()}`, '--', ...command], { stdio: 'inherit' }).status ?? 1;
    }
    case 'restart': {
      const n = hostArg(rest[0]);
      await restartHost(n, { hosts: presentHosts().length, log });
      return 0;
    }
    case 'env': {
      console.log(`export DOCKER_HOST=${hostDocker(hostArg(rest[0]))}`);
      return 0;
    }
    default:
      console.error(USAGE);
      return cmd === undefined || cmd === '-h' || cmd === '--help' ? 0 : 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`mesh: ${e.message}`);
    process.exit(1);
  },
);
