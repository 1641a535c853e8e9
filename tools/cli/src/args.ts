import { DEFAULT_SECRETS_DIR, NATS_CLIENT_SECRET_FILE } from '@weave/config';
import { HostName } from '@weave/contracts';
import { join } from 'node:path';
import { z } from 'zod';

/** Where compose/host.yml keeps the client credentials by default: run as root, the CLI finds them. */
export const DEFAULT_CREDS = join(DEFAULT_SECRETS_DIR, NATS_CLIENT_SECRET_FILE);

export const USAGE = `usage: weave <command> [--json]
  status [--all]     this host (or, with --all, every host of the mesh): peers, paths, networks, address pools, problems
  status --graph <file.svg|->   the mesh as an SVG picture (hosts, and the paths between them) to a file or stdout
  peers              the peers this host's router knows, with their path and MTU
  networks           every weave network once, with its endpoints per host, across the mesh
  ps                 every weave endpoint across the mesh, with its addresses
  events [host|host.service|host.service.kind] [--since <duration|time>]
                     print events as they happen; with --since, first those kept since then
                     (a duration back from now: 90s, 15m, 1h30m, 2d; or an RFC3339 time: 2026-01-01T12:00:00Z)
  rmpeer <host> [--force]   reclaim a lost host's address blocks now rather than after its lease
                     (refused for a live host without --force; safe to run on several hosts at once)
environment: WEAVE_NATS_URL (default nats://127.0.0.1:4222), WEAVE_HOST (default: this machine),
  WEAVE_NATS_CREDS_FILE (default ${DEFAULT_CREDS} when it exists: the stack's, root's only)`;

const UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;
const RFC3339 = z.iso.datetime({ offset: true });

/** `--since`: a duration back from `now` or an RFC3339 time, not after `now`. */
export function Since(now: Date) {
  return z.string().transform((s, ctx): Date => {
    const fail = (message: string) => (ctx.addIssue({ code: 'custom', message: `--since ${JSON.stringify(s)}: ${message}` }), z.NEVER);
    if (DURATION.test(s)) {
      const ms = [...s.matchAll(/(\d+)(ms|s|m|h|d)/g)].reduce((sum, [, n, unit]) => sum + Number(n) * UNITS_MS[unit as keyof typeof UNITS_MS], 0);
      return ms > 0 ? new Date(now.getTime() - ms) : fail('must be longer than 0');
    }
    if (!RFC3339.safeParse(s).success) return fail('expected a duration (90s, 15m, 1h30m, 2d) or an RFC3339 time (2026-01-01T12:00:00Z, 2026-01-01T13:00:00+01:00)');
    const at = new Date(s);
    return at.getTime() > now.getTime() ? fail(`${at.toISOString()} is in the future`) : at;
  });
}

function argsSchema(now: Date) {
  return z.discriminatedUnion('command', [
    z.object({
      command: z.literal('events'),
      json: z.boolean(),
      filter: z.string().regex(/^[A-Za-z0-9_.*>-]+$/, 'filter must be NATS subject tokens').optional(),
      since: Since(now).optional(),
    }),
    z.object({ command: z.literal('status'), json: z.boolean(), all: z.boolean(), graph: z.string().min(1, '--graph needs a file name, or - for stdout').optional() }),
    z.object({ command: z.enum(['peers', 'networks', 'ps']), json: z.boolean() }),
    z.object({ command: z.literal('rmpeer'), json: z.boolean(), host: HostName, force: z.boolean() }),
  ]);
}
export type Args = z.output<ReturnType<typeof argsSchema>>;

/** The flags each command takes besides --json, and those of them that take a value. */
const FLAGS: Record<string, string[]> = { status: ['--all', '--graph'], rmpeer: ['--force'], events: ['--since'] };
const TAKES_VALUE = new Set(['--since', '--graph']);

interface Tokens {
  positional: string[];
  flags: Map<string, string | true>;
}

/** argv as positionals and flags; a flag's value follows it (`--since 5m`) or is joined (`--since=5m`). */
function tokenize(argv: readonly string[]): Tokens {
  const t: Tokens = { positional: [], flags: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) {
      t.positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const [name, joined] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    if (!TAKES_VALUE.has(name)) t.flags.set(a, true);
    else if (joined !== undefined) t.flags.set(name, joined);
    else {
      const next = argv[i + 1];
      if (next === undefined || (next !== '-' && next.startsWith('-'))) throw new Error(`${name} needs a value${next ? `, not ${next}` : ''}\n${USAGE}`);
      t.flags.set(name, next);
      i++;
    }
  }
  return t;
}

/** The command line, checked: a message with the usage for anything it does not take. */
export function parseArgs(argv: readonly string[], now: Date = new Date()): Args {
  const { positional, flags } = tokenize(argv);
  const [command, arg, ...rest] = positional;
  const allowed = new Set(['--json', ...(FLAGS[command ?? ''] ?? [])]);
  const unknownFlag = [...flags.keys()].find((f) => !allowed.has(f));
  const takesArg = command === 'events' || command === 'rmpeer';
  if (unknownFlag || rest.length || (arg && !takesArg)) throw new Error(`unexpected argument ${unknownFlag ?? rest[0] ?? arg}\n${USAGE}`);
  if (flags.has('--graph') && flags.has('--json')) throw new Error(`--graph writes a picture; it does not take --json\n${USAGE}`);
  const value = (f: string) => flags.get(f) as string | undefined;
  const named = command === 'rmpeer' ? { host: arg } : arg ? { filter: arg } : {};
  const r = argsSchema(now).safeParse({
    command,
    json: flags.has('--json'),
    all: flags.has('--all'),
    force: flags.has('--force'),
    since: value('--since'),
    graph: value('--graph'),
    ...named,
  });
  if (!r.success) throw new Error(`${z.prettifyError(r.error)}\n${USAGE}`);
  return r.data;
}
