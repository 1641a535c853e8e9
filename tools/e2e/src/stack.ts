import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { rpcClient } from '@weave/bus';
import { ensureNatsCredentials, NATS_CLIENT_SECRET_FILE } from '@weave/config';
import { ipamRpc, netwireRpc, pluginApiRpc, routerRpc, ServiceName } from '@weave/contracts';
import { pluginAnswers } from '@weave/docker-cli';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';
import { answersOverNats, exited, killChild, spawnService, stopChild } from './service-process';

type Svc = ServiceName;
// The router is left out unless asked for: it needs the native addon, and without a peer it has
// nothing to do for the suites that use Docker.
const DEFAULT_SERVICES: readonly Svc[] = ['ipam', 'netwire', 'plugin-api'];

export interface StackOptions {
  /** The services to run, in start order; stopped in reverse. */
  services?: readonly Svc[];
  /** Variables for one service only, on top of the stack's (a router of its own host identity, say). */
  serviceEnv?: Partial<Record<Svc, Record<string, string>>>;
}

/**
 * One host's weave stack as real processes (the same entry points the images run) on a real
 * nats-server, under a plugin name and host identity of its own so it cannot disturb another
 * stack on the machine. Each service can be killed and restarted to test crashes. As installed,
 * NATS asks for credentials, made as compose/host.yml's `secrets` service makes them, and the
 * services read them from WEAVE_NATS_CREDS_FILE.
 */
export class ProcessStack {
  readonly plugin = `wt${randomBytes(4).toString('hex')}`;
  readonly host = `e2e-${this.plugin}`;
  readonly socket = `/run/docker/plugins/${this.plugin}.sock`;
  private readonly logDir = mkdtempSync(join(tmpdir(), 'weave-e2e-'));
  /** Root's only (mkdtemp makes it 0700), like /var/lib/weave. */
  private readonly secretsDir = mkdtempSync(join(tmpdir(), 'weave-e2e-secrets-'));
  private readonly procs = new Map<Svc, ChildProcess>();
  nats!: NatsServer;
  nc!: NatsConnection;

  private readonly services: readonly Svc[];

  constructor(
    private readonly extraEnv: Record<string, string> = {},
    private readonly o: StackOptions = {},
  ) {
    this.services = o.services ?? DEFAULT_SERVICES;
  }

  async start(): Promise<this> {
    const credentials = ensureNatsCredentials(this.secretsDir);
    this.nats = await startNatsServer({ credentials });
    // Reconnecting for ever, like the services: a test may kill and restart the nats-server.
    this.nc = await connect({ servers: this.nats.url, user: credentials.user, pass: credentials.password, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    for (const s of this.services) await this.startService(s);
    return this;
  }

  /** The host identity `s` runs as: the stack's, unless its own env says otherwise. */
  hostOf(s: Svc): string {
    return this.o.serviceEnv?.[s]?.WEAVE_HOST ?? this.host;
  }

  get ipam() {
    return rpcClient(this.nc, this.host, ipamRpc);
  }
  get netwire() {
    return rpcClient(this.nc, this.host, netwireRpc);
  }
  get router() {
    return rpcClient(this.nc, this.hostOf('router'), routerRpc);
  }
  get pluginApi() {
    return rpcClient(this.nc, this.hostOf('plugin-api'), pluginApiRpc);
  }

  /** What a process needs to reach this stack's NATS as its services do (the CLI, a service of another host). */
  natsEnv(): Record<string, string> {
    return { WEAVE_NATS_URL: this.nats.url, WEAVE_NATS_CREDS_FILE: join(this.secretsDir, NATS_CLIENT_SECRET_FILE) };
  }

  /** Where a service's output goes; `name` is the service, or another process of the test's. */
  logFile(name: string): string {
    return join(this.logDir, `${name}.log`);
  }

  async startService(s: Svc): Promise<void> {
    const env = { WEAVE_HOST: this.host, ...this.natsEnv(), WEAVE_PLUGIN_NAME: this.plugin, WEAVE_LOG_LEVEL: 'debug', ...this.extraEnv, ...this.o.serviceEnv?.[s] };
    const proc = spawnService(s, this.logFile(s), env);
    this.procs.set(s, proc);
    await waitFor(() => (proc.exitCode !== null ? Promise.reject(new Error(`${s} exited: ${this.logTail(s)}`)) : this.ready(s)), {
      what: `${s} of ${this.host} to answer`,
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }

  /** Whether `s` answers now: its status over NATS, or Plugin.Activate on the socket for plugin-api. */
  async ready(s: Svc): Promise<boolean> {
    if (s === 'plugin-api') return pluginAnswers(this.socket);
    return answersOverNats(this.nc, this.hostOf(s), s);
  }

  /** Kills one service the hard way, as a crash would (SIGKILL: no cleanup runs). */
  async kill(s: Svc): Promise<void> {
    await killChild(this.procs.get(s));
  }

  isAlive(s: Svc): boolean {
    const p = this.procs.get(s);
    return !!p && !exited(p);
  }

  logTail(s: string, lines = 30): string {
    try {
      return readFileSync(this.logFile(s), 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Stops every service gracefully (SIGTERM), then NATS; removes the socket and logs. */
  async stop(): Promise<void> {
    for (const s of [...this.services].reverse()) await stopChild(this.procs.get(s));
    await this.nc?.close();
    await this.nats?.stop();
    rmSync(this.socket, { force: true });
    rmSync(this.secretsDir, { recursive: true, force: true });
    if (!process.env.WEAVE_E2E_KEEP_LOGS) rmSync(this.logDir, { recursive: true, force: true });
  }
}
