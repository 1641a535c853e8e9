// nats-server's entry point (compose/host.yml mounts it; node is on the image). It runs
// nats-server with the arguments compose gives it, unchanged when WEAVE_PEERS is empty (one host,
// clients on loopback only). With WEAVE_PEERS=<addr>[:port],… it adds what joins this server to the
// other hosts' servers as one NATS cluster, so JetStream (and the KV buckets) spans the mesh:
//   --cluster_name weave --cluster nats://0.0.0.0:6222 --routes nats://<peer>:6222,…
//   -m 8222 (monitoring; bound like the clients, to 127.0.0.1)
// Clients stay on loopback: only routes listen on the underlay (no auth or TLS on routes yet).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

const env = process.env;
const args = process.argv.slice(2);
const peers = (env.WEAVE_PEERS ?? '').split(/[\s,]+/).filter(Boolean);

if (peers.length > 0) {
  const clusterPort = port('WEAVE_NATS_CLUSTER_PORT', 6222);
  const routes = peers.map((p) => {
    const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::(\d+))?$/.exec(p);
    if (!m) die(`WEAVE_PEERS: ${JSON.stringify(p)} is not an address or address:port`);
    return `nats://${m[1]}:${m[2] ?? clusterPort}`;
  });
  // Every server in a JetStream cluster needs its own name: without WEAVE_HOST, use the machine id.
  const n = args.indexOf('-n');
  if (!env.WEAVE_HOST && n >= 0) args[n + 1] = `weave-${machineId()}`;
  args.push('--cluster_name', env.WEAVE_NATS_CLUSTER_NAME || 'weave', '--cluster', `nats://0.0.0.0:${clusterPort}`, '--routes', routes.join(','));
  args.push('-m', String(port('WEAVE_NATS_MONITOR_PORT', 8222)));
}

const child = spawn('/usr/local/bin/nats-server', args, { stdio: 'inherit' });
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGQUIT']) process.on(sig, () => child.kill(sig));
child.on('error', (e) => die(`nats-server: ${e.message}`));
child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' || signal === 'SIGINT' ? 0 : 1)));

function port(name, dflt) {
  const v = env[name] || String(dflt);
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) die(`${name}: ${JSON.stringify(v)} is not a port`);
  return Number(v);
}

function machineId() {
  try {
    const id = readFileSync('/etc/machine-id', 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(id)) return id.slice(0, 12);
  } catch {
    /* fall through */
  }
  die('WEAVE_PEERS is set but neither WEAVE_HOST nor /etc/machine-id names this server');
}

function die(msg) {
  console.error(`nats-entrypoint: ${msg}`);
  process.exit(2);
}
