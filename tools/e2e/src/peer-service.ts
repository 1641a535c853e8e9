import type { ChildProcess } from 'node:child_process';
import type { ServiceName } from '@weave/contracts';
import { waitFor } from '@weave/testing';
import { answersOverNats, exited, killChild, spawnService, stopChild } from './service-process';
import type { ProcessStack } from './stack';

/**
 * One service of another host identity on a stack's nats-server, as its own process: a second
 * ipam that reclaims the stack's host once its lease runs out, say. Its metrics are off (the
 * stack's own service has the port). `stop` is safe in any state: call it after the test.
 */
export class PeerService {
  private proc: ChildProcess | null = null;

  constructor(
    private readonly stack: ProcessStack,
    readonly service: Exclude<ServiceName, 'plugin-api'>,
    readonly host: string,
    private readonly env: Record<string, string> = {},
  ) {}

  async start(): Promise<void> {
    const name = `${this.service}@${this.host}`;
    const metricsOff = { [`WEAVE_${this.service.toUpperCase()}_METRICS_PORT`]: 'off' };
    const proc = spawnService(this.service, this.stack.logFile(name), { WEAVE_HOST: this.host, ...this.stack.natsEnv(), WEAVE_LOG_LEVEL: 'debug', ...metricsOff, ...this.env });
    this.proc = proc;
    await waitFor(() => (exited(proc) ? Promise.reject(new Error(`${name} exited: ${this.stack.logTail(name)}`)) : answersOverNats(this.stack.nc, this.host, this.service)), {
      what: `${name} to answer`,
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }

  kill(): Promise<void> {
    return killChild(this.proc);
  }

  stop(): Promise<void> {
    return stopChild(this.proc);
  }
}
