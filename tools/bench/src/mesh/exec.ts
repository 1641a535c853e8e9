import { execFile } from 'node:child_process';

/** A command that failed, with what it printed on stderr (the kernel's or iperf3's own words). */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | string | null,
    readonly stderr: string,
    readonly stdout: string,
    options?: ErrorOptions,
  ) {
    super(`${argv.join(' ')} failed (${exitCode ?? 'killed'}): ${stderr.trim() || stdout.trim().slice(0, 500)}`, options);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  /** Kills the command (SIGKILL) when aborted. */
  signal?: AbortSignal;
}

/** Runs argv[0] with argv[1..]; resolves with stdout, rejects with a CommandError. */
export function run(argv: readonly string[], o: RunOptions = {}): Promise<string> {
  const [cmd, ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = execFile(cmd!, args, { timeout: o.timeoutMs ?? 30_000, maxBuffer: 64 << 20, killSignal: 'SIGKILL', signal: o.signal }, (err, stdout, stderr) => {
      if (err) reject(new CommandError(argv, err.code ?? err.signal ?? null, stderr, stdout, { cause: err }));
      else resolve(stdout);
    });
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}

/** `ip -n <ns> -batch -`: several iproute2 commands in one namespace, one process. */
export const ipBatch = (ns: string, lines: readonly string[]): Promise<string> =>
  run(['ip', '-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });

/** argv prefixed so it runs inside network namespace `ns`. */
export const inNs = (ns: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', ns, ...argv];

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
