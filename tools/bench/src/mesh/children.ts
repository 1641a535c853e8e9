import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;

/** Resolves when `c` has exited, or with false after `ms`. */
export function waitExit(c: ChildProcess, ms: number): Promise<boolean> {
  if (exited(c)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => (c.off('exit', done), resolve(false)), ms);
    const done = () => (clearTimeout(t), resolve(true));
    c.once('exit', done);
  });
}

/** Ends one child by its pid: SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopChild(c: ChildProcess, graceMs = 3000): Promise<void> {
  if (exited(c) || c.pid === undefined) return;
  c.kill('SIGTERM');
  if (await waitExit(c, graceMs)) return;
  c.kill('SIGKILL');
  await waitExit(c, graceMs);
}

/** Every process the benchmark starts, so that cleanup can end exactly those. */
export class Children {
  readonly #live = new Set<ChildProcess>();

  spawn(argv: readonly string[], o: SpawnOptions = {}): ChildProcess {
    const [cmd, ...args] = argv;
    const c = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], ...o });
    this.#live.add(c);
    c.once('exit', () => this.#live.delete(c));
    c.once('error', () => this.#live.delete(c));
    return c;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#live].map((c) => stopChild(c)));
  }
}

/** The last `max` characters a stream printed, for error messages. */
export function tailOf(stream: NodeJS.ReadableStream | null, max = 2000): () => string {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (d: string) => (text = (text + d).slice(-max)));
  return () => text;
}
