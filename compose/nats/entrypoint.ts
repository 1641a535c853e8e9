// The weave-nats image's entry point (bundled to dist/nats/entrypoint.js with what it imports).
//   `init`: compose/host.yml's one-shot `secrets` service. Makes the secrets directory root's only
//           and the NATS client credentials in it if they are not there yet (never replaces
//           them), and checks the cluster settings, so `docker compose up` itself fails, with
//           the fix in the message, rather than a nats-server that restarts for ever.
//   otherwise: writes nats-server's configuration from the environment and those secrets (see
//           planNatsServer in libs/config) and runs nats-server with it, plus any arguments.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNatsCredentials, NATS_CLIENT_SECRET_FILE, NatsServerEnv, natsServerConfig, planNatsServer, readClusterSecret, readEnv, readNatsCredentials } from '@weave/config';
import { describeError } from '@weave/errors';

const NATS_SERVER = '/usr/local/bin/nats-server';
/** compose/host.yml mounts a tmpfs here: the configuration holds secrets and never touches a disk. */
const CONF_DIR = '/run/weave-nats';

function init(): void {
  const env = readEnv(NatsServerEnv);
  ensureNatsCredentials(env.WEAVE_SECRETS_DIR);
  if (env.WEAVE_PEERS.length > 0) plan(env);
  const cluster = env.WEAVE_PEERS.length > 0 ? `cluster secret found; routes to ${env.WEAVE_PEERS.join(', ')}` : 'no peers, no cluster port';
  console.error(`nats-entrypoint: secrets ready in ${env.WEAVE_SECRETS_DIR} (${cluster})`);
}

function plan(env: NatsServerEnv) {
  return planNatsServer(env, {
    machineId: machineId(),
    credentials: readNatsCredentials(join(env.WEAVE_SECRETS_DIR, NATS_CLIENT_SECRET_FILE)),
    clusterSecret: env.WEAVE_PEERS.length > 0 ? readClusterSecret({ env: env.WEAVE_CLUSTER_SECRET, dir: env.WEAVE_SECRETS_DIR }) : null,
  });
}

function serve(args: string[]): void {
  const conf = join(CONF_DIR, 'nats.conf');
  mkdirSync(CONF_DIR, { recursive: true, mode: 0o700 });
  writeFileSync(conf, natsServerConfig(plan(readEnv(NatsServerEnv))), { mode: 0o600 });
  const child = spawn(NATS_SERVER, ['-c', conf, ...args], { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGQUIT'] as const) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => die(`${NATS_SERVER}: ${e.message}`));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' || signal === 'SIGINT' ? 0 : 1)));
}

/** Names this server in a cluster when WEAVE_HOST is not set (compose mounts the host's). */
function machineId(): string | null {
  try {
    const id = readFileSync('/etc/machine-id', 'utf8').trim();
    return /^[0-9a-f]{32}$/.test(id) ? id.slice(0, 12) : null;
  } catch {
    return null;
  }
}

function die(msg: string): never {
  console.error(`nats-entrypoint: ${msg}`);
  process.exit(2);
}

try {
  const args = process.argv.slice(2);
  if (args[0] === 'init') init();
  else serve(args);
} catch (e) {
  die(describeError(e));
}
