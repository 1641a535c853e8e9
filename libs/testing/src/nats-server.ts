import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '@weave/sync';

export interface NatsServer {
  url: string;
  port: number;
  /** Kills the server (SIGKILL when `hard`, as a crash would), keeping its store for a restart. */
  kill(hard?: boolean): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  /** Kills it and removes its store. */
  stop(): Promise<void>;
  /** The end of what it logged (nats-server logs to stderr), to wait for something it reports. */
  log(): string;
}

export interface NatsServerOptions {
  /** Clients must present this user and password (on the command line: for tests only); without it, none is asked for. */
  credentials?: { user: string; password: string };
  /** The whole configuration instead (say, a cluster member's), for the port and store given. */
  config?: (o: { port: number; storeDir: string }) => string;
}

/** A real nats-server with JetStream on a free loopback port and a throwaway store. */
export async function startNatsServer(o: NatsServerOptions = {}): Promise<NatsServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'weave-nats-'));
  let args = ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir];
  if (o.credentials) args.push('--user', o.credentials.user, '--pass', o.credentials.password);
  if (o.config) {
    const file = join(dir, 'nats.conf');
    writeFileSync(file, o.config({ port, storeDir: join(dir, 'store') }), { mode: 0o600 });
    args = ['-c', file];
  }
  let proc: ChildProcess | null = null;
  let stderr = '';
  const start = async (): Promise<void> => {
    const p = spawn(process.env.NATS_SERVER ?? 'nats-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    // A server that cannot start (a bad configuration) says why on stderr and exits: fail with that.
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-20_000)));
    const state = await waitFor(async () => (p.exitCode !== null ? 'exited' : (await canConnect(port)) && 'up'), {
      what: `nats-server on 127.0.0.1:${port}`,
      timeoutMs: 10_000,
    });
    if (state === 'exited') throw new Error(`nats-server exited (${p.exitCode}): ${stderr.trim()}`);
  };
  const kill = async (hard = false): Promise<void> => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
  };
  try {
    await start();
  } catch (e) {
    await kill();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    kill,
    restart: start,
    log: () => stderr,
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = require('node:net').connect(port, '127.0.0.1');
    sock.once('connect', () => (sock.destroy(), resolve(true)));
    sock.once('error', () => resolve(false));
  });
}
