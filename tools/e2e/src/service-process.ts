import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { rpcClient } from '@weave/bus';
import type { NatsConnection } from '@nats-io/transport-node';
import { ipamRpc, netwireRpc, routerRpc, ServiceName } from '@weave/contracts';

const root = join(__dirname, '..', '..', '..');

/** One service as the images run it (its main.ts, through tsx), output appended to `logFile`. */
export function spawnService(s: ServiceName, logFile: string, env: Record<string, string>): ChildProcess {
  const out = openSync(logFile, 'a');
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'services', s, 'src', 'main.ts')], { cwd: root, stdio: ['ignore', out, out], env: { ...process.env, ...env } });
  closeSync(out);
  return proc;
}

/** Whether `s` of `host` answers its status over NATS now (not plugin-api, which has no NATS status to wait on at start). */
export function answersOverNats(nc: NatsConnection, host: string, s: Exclude<ServiceName, 'plugin-api'>): Promise<boolean> {
  // A short timeout: a probe sent while NATS reconnects may never be answered, and waiting the
  // default 10 s for it would make an outage look that much longer.
  const o = { timeoutMs: 1000 };
  const probe = s === 'ipam' ? rpcClient(nc, host, ipamRpc, o).status({}) : s === 'netwire' ? rpcClient(nc, host, netwireRpc, o).status({}) : rpcClient(nc, host, routerRpc, o).status({});
  return probe.then(() => true, () => false);
}

export const exited = (p: ChildProcess): boolean => p.exitCode !== null || p.signalCode !== null;

/** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
export async function stopChild(p: ChildProcess | undefined | null, graceMs = 5000): Promise<void> {
  if (!p || exited(p)) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}

/** SIGKILL, as a crash would: no cleanup runs. */
export async function killChild(p: ChildProcess | undefined | null): Promise<void> {
  if (!p || exited(p)) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await gone;
}
