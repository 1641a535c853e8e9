import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { rpcClient } from '@weave/bus';
import { ipamRpc, netwireRpc, ServiceName } from '@weave/contracts';
import { pluginAnswers } from '@weave/docker-cli';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';

const root = join(__dirname, '..', '..', '..');
type Svc = Exclude<ServiceName, 'router'>;
const SERVICES: readonly Svc[] = ['ipam', 'netwire', 'plugin-api'];

/**
 * One host's weave stack as real processes (the same entry points the images run) on a real
 * nats-server, under a plugin name and host identity of its own so it cannot disturb another
 * stack on the machine. Each service can be killed and restarted to test crashes.
 */
export class ProcessStack {
  readonly plugin = `wt${randomBytes(4).toString('hex')}`;
  readonly host = `e2e-${this.plugin}`;
  readonly socket = `/run/docker/plugins/${this.plugin}.sock`;
  private readonly logDir = mkdtempSync(join(tmpdir(), 'weave-e2e-'));
  private readonly procs = new Map<Svc, ChildProcess>();
  nats!: NatsServer;
  nc!: NatsConnection;

  constructor(private readonly extraEnv: Record<string, string> = {}) {}

  async start(): Promise<this> {
    this.nats = await startNatsServer();
    this.nc = await connect({ servers: this.nats.url });
    for (const s of SERVICES) await this.startService(s);
    return this;
  }

  get ipam() {
    return rpcClient(this.nc, this.host, ipamRpc);
  }
  get netwire() {
    return rpcClient(this.nc, this.host, netwireRpc);
  }

  async startService(s: Svc): Promise<void> {
    const out = openSync(join(this.logDir, `${s}.log`), 'a');
    const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'services', s, 'src', 'main.ts')], {
      cwd: root,
      stdio: ['ignore', out, out],
      env: {
        ...process.env,
        WEAVE_HOST: this.host,
        WEAVE_NATS_URL: this.nats.url,
        WEAVE_PLUGIN_NAME: this.plugin,
        WEAVE_LOG_LEVEL: 'debug',
        ...this.extraEnv,
      },
    });
    closeSync(out);
    this.procs.set(s, proc);
    await waitFor(() => (proc.exitCode !== null ? Promise.reject(new Error(`${s} exited: ${this.logTail(s)}`)) : this.ready(s)), {
      what: `${s} of ${this.host} to answer`,
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }

  private async ready(s: Svc): Promise<boolean> {
    if (s === 'plugin-api') return pluginAnswers(this.socket);
    const client = s === 'ipam' ? this.ipam : this.netwire;
    return client.status({}).then(() => true, () => false);
  }

  /** Kills one service the hard way, as a crash would (SIGKILL: no cleanup runs). */
  async kill(s: Svc): Promise<void> {
    const p = this.procs.get(s);
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  isAlive(s: Svc): boolean {
    const p = this.procs.get(s);
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  logTail(s: Svc, lines = 30): string {
    try {
      return readFileSync(join(this.logDir, `${s}.log`), 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Stops every service gracefully (SIGTERM), then NATS; removes the socket and logs. */
  async stop(): Promise<void> {
    for (const s of [...SERVICES].reverse()) {
      const p = this.procs.get(s);
      if (!p || p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await this.nc?.close();
    await this.nats?.stop();
    rmSync(this.socket, { force: true });
    if (!process.env.WEAVE_E2E_KEEP_LOGS) rmSync(this.logDir, { recursive: true, force: true });
  }
}
