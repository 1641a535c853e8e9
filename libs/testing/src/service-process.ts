import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { waitFor } from '@weave/sync';

const root = join(__dirname, '..', '..', '..');

export interface ServiceProcess {
  /** What it wrote to stdout and stderr (the end of it), for messages. */
  output(): string;
  /** SIGTERM, as compose stops it; SIGKILL if it is not gone after 5 s. */
  stop(): Promise<void>;
}

/**
 * A service's entry point (services/<name>/src/main.ts) as a process of its own, as the images
 * run it, with `env` on top of this process's environment. Resolves once `ready` says so;
 * fails with its output if it exits first.
 */
export async function startServiceProcess(service: string, env: Record<string, string>, ready: () => Promise<boolean>): Promise<ServiceProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'services', service, 'src', 'main.ts')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  const keep = (d: string): void => void (out = (out + d).slice(-20_000));
  proc.stdout.setEncoding('utf8').on('data', keep);
  proc.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const state = await waitFor(async () => (proc.exitCode !== null ? 'exited' : (await ready()) && 'ready'), { what: `${service} to be ready`, timeoutMs: 30_000, intervalMs: 100 });
    if (state === 'exited') throw new Error(`${service} exited (${proc.exitCode}) before it was ready:\n${out}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return { output: () => out, stop };
}
