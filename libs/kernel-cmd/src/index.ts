/** Kernel commands (ip, bridge, iptables, ebtables) run without a shell, in our network namespace or a named one, with errors that say what the kernel said. Shared by netwire and the router. */
import { execFile } from 'node:child_process';
import { describeError, UnavailableError } from '@weave/errors';
import { z } from 'zod';

/** Runs a program without a shell; `input`, when given, is written to its stdin. Injected so command lines can be tested without root. */
export type Exec = (file: string, args: readonly string[], input?: string) => Promise<{ stdout: string; stderr: string }>;

export interface CommandOptions {
  /**
   * A named network namespace (/run/netns/<name>) to work in instead of our own: tests use
   * throwaway ones. Entered with nsenter, which leaves /sys alone, so sysfs shortcuts are off.
   */
  netns?: string | null;
  exec?: Exec;
}

/** A kernel command (ip, bridge, iptables, ebtables) that failed; `stderr` is what it said. */
export class KernelCommandError extends UnavailableError {
  constructor(
    readonly command: string,
    readonly stderr: string,
    readonly exitCode: number | null,
    options?: ErrorOptions,
  ) {
    super(`\`${command}\` failed${exitCode === null ? '' : ` (exit ${exitCode})`}: ${stderr.trim() || 'no error output'}`, options);
  }

  /** The program itself is missing (spawn ENOENT): a package the image lacks. */
  get notInstalled(): boolean {
    return (this.cause as { code?: unknown } | undefined)?.code === 'ENOENT';
  }
}

/** What a failed command said, without the command line (the caller names the device or chain). */
export const reasonOf = (e: unknown): string => (e instanceof KernelCommandError ? e.stderr.trim() || e.message : describeError(e));

/** True when `e` says the device named does not exist. */
export const isNoDevice = (e: unknown): boolean => e instanceof KernelCommandError && /Cannot find device|does not exist/i.test(e.stderr);

/** Runs kernel commands, in our own network namespace or a named one. */
export class Commands {
  readonly netns: string | null;
  private readonly exec: Exec;
  private readonly prefix: string[];

  constructor(o: CommandOptions = {}) {
    this.exec = o.exec ?? execFileNoShell;
    if (o.netns && !/^[A-Za-z0-9_.-]+$/.test(o.netns)) throw new TypeError(`bad network namespace name ${JSON.stringify(o.netns)}`);
    this.netns = o.netns ?? null;
    this.prefix = o.netns ? ['nsenter', `--net=/run/netns/${o.netns}`, '--'] : [];
  }

  async run(file: string, args: readonly string[], input?: string): Promise<string> {
    const argv = [...this.prefix, file, ...args];
    try {
      return (await this.exec(argv[0]!, argv.slice(1), input)).stdout;
    } catch (e) {
      const err = e as { stderr?: unknown; code?: unknown };
      const said = typeof err.stderr === 'string' && err.stderr.trim() !== '' ? err.stderr : e instanceof Error ? e.message : String(e);
      const stderr = err.code === 'ENOENT' ? `${file} is not installed (${said.trim()})` : said;
      throw new KernelCommandError(argv.join(' '), stderr, typeof err.code === 'number' ? err.code : null, { cause: e });
    }
  }
}

/** The default Exec: execFile, no shell, 15 s at most. */
export const execFileNoShell: Exec = (file, args, input) =>
  new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: 15_000, maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
    // A program that exits without reading its stdin makes the write fail with EPIPE; its own
    // exit status is what counts.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });

// `ip -j route get` puts a route's own MTU (`ip route … mtu N`, or a learnt PMTU) in `metrics`.
const RouteGet = z.array(z.looseObject({ dev: z.string(), mtu: z.number().optional(), metrics: z.array(z.looseObject({ mtu: z.number().optional() })).optional() })).min(1);

/** The device and, when the route has one of its own, the MTU of `ip -j route get`'s answer. */
export function routeOf(json: unknown): { dev: string; mtu: number | null } {
  const route = RouteGet.parse(json)[0]!;
  return { dev: route.dev, mtu: route.mtu ?? route.metrics?.find((m) => m.mtu !== undefined)?.mtu ?? null };
}
