import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AuthorizationError, connect } from '@nats-io/transport-node';
import { rpcClient, subscribeEvents } from '@weave/bus';
import { CommonEnv, DEFAULT_SECRETS_DIR, NATS_CLIENT_SECRET_FILE, natsAuth, readEnv } from '@weave/config';
import { HostName, ipamRpc, Subjects } from '@weave/contracts';
import { describeError } from '@weave/errors';
import { z } from 'zod';
import { eventLine } from './format';
import { meshReports, reportOf } from './reports';
import { HostReport, networksView, peersView, psView, rmpeerView, statusView } from './views';

/** Where compose/host.yml keeps the client credentials by default: run as root, the CLI finds them. */
const DEFAULT_CREDS = join(DEFAULT_SECRETS_DIR, NATS_CLIENT_SECRET_FILE);

const USAGE = `usage: weave <command> [--json]
  status [--all]     this host (or, with --all, every host of the mesh): peers, paths, networks, address pools, problems
  peers              the peers this host's router knows, with their path and MTU
  networks           every weave network once, with its endpoints per host, across the mesh
  ps                 every weave endpoint across the mesh, with its addresses
  events [host|host.service|host.service.kind]   print events as they happen
  rmpeer <host> [--force]   reclaim a lost host's address blocks now rather than after its lease
                     (refused for a live host without --force; safe to run on several hosts at once)
environment: WEAVE_NATS_URL (default nats://127.0.0.1:4222), WEAVE_HOST (default: this machine),
  WEAVE_NATS_CREDS_FILE (default ${DEFAULT_CREDS} when it exists: the stack's, root's only)`;

const Args = z.discriminatedUnion('command', [
  z.object({ command: z.literal('events'), json: z.boolean(), filter: z.string().regex(/^[A-Za-z0-9_.*>-]+$/, 'filter must be NATS subject tokens').optional() }),
  z.object({ command: z.literal('status'), json: z.boolean(), all: z.boolean() }),
  z.object({ command: z.enum(['peers', 'networks', 'ps']), json: z.boolean() }),
  z.object({ command: z.literal('rmpeer'), json: z.boolean(), host: HostName, force: z.boolean() }),
]);

/** The flags each command takes besides --json. */
const FLAGS: Record<string, string[]> = { status: ['--all'], rmpeer: ['--force'] };

function parseArgs(argv: string[]): z.output<typeof Args> {
  const flags = new Set(argv.filter((a) => a.startsWith('-')));
  const [command, arg, ...rest] = argv.filter((a) => !a.startsWith('-'));
  const allowed = new Set(['--json', ...(FLAGS[command ?? ''] ?? [])]);
  const unknownFlag = [...flags].find((f) => !allowed.has(f));
  const takesArg = command === 'events' || command === 'rmpeer';
  if (unknownFlag || rest.length || (arg && !takesArg)) throw new Error(`unexpected argument ${unknownFlag ?? rest[0] ?? arg}\n${USAGE}`);
  const named = command === 'rmpeer' ? { host: arg } : arg ? { filter: arg } : {};
  const r = Args.safeParse({ command, json: flags.has('--json'), all: flags.has('--all'), force: flags.has('--force'), ...named });
  if (!r.success) throw new Error(`${z.prettifyError(r.error)}\n${USAGE}`);
  return r.data;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const env = readEnv(CommonEnv);
  const auth = natsAuth({ WEAVE_NATS_CREDS_FILE: env.WEAVE_NATS_CREDS_FILE ?? (existsSync(DEFAULT_CREDS) ? DEFAULT_CREDS : undefined) });
  const nc = await connect({ servers: env.WEAVE_NATS_URL.split(','), ...auth }).catch((e) => {
    if (e instanceof AuthorizationError) {
      const fix = auth.user ? 'the file is not the one the stack uses' : `run as root (the stack's are in ${DEFAULT_CREDS}) or set WEAVE_NATS_CREDS_FILE`;
      throw new Error(`NATS at ${env.WEAVE_NATS_URL} refused ${auth.user ? `user ${auth.user}` : 'a connection without credentials'}: ${fix}`, { cause: e });
    }
    throw new Error(`cannot reach NATS at ${env.WEAVE_NATS_URL}: is the stack up (npm start)?`, { cause: e });
  });
  if (args.command === 'events') {
    const subject = args.filter ? `weave.events.${args.filter}${args.filter.split('.').length < 3 ? '.>' : ''}` : Subjects.allEvents;
    subscribeEvents(
      nc,
      (e) => console.log(args.json ? JSON.stringify(e) : eventLine(e)),
      (s, err) => console.error(`ignored a malformed event on ${s}: ${describeError(err)}`),
      subject,
    );
    process.on('SIGINT', () => void nc.close().then(() => process.exit(0)));
    return;
  }
  const now = new Date();
  const print = (json: unknown, text: () => string) => console.log(args.json ? JSON.stringify(json, null, 2) : text());
  switch (args.command) {
    case 'status': {
      const reports = args.all ? await meshReports(nc, env.WEAVE_HOST) : [await reportOf(nc, env.WEAVE_HOST)];
      print(args.all ? reports : reports[0], () => reports.map((r) => statusView(r, now)).join('\n\n'));
      // Scripts (and the mesh's readiness check) rely on it: a host whose ipam or netwire did not answer is not up.
      if (reports.some((r) => !r.ipam || !r.netwire)) process.exitCode = 1;
      break;
    }
    case 'peers': {
      const r = await reportOf(nc, env.WEAVE_HOST);
      if (!r.router) throw new Error(`no router answered on ${env.WEAVE_HOST}: ${r.problems.join('; ') || 'is the stack up?'}`);
      print(r.router.peers, () => peersView(r.router!, now));
      break;
    }
    case 'networks': {
      const reports = await meshReports(nc, env.WEAVE_HOST);
      print(reports.map((r) => ({ host: r.host, networks: r.netwire?.networks ?? null, problems: r.problems })), () => withProblems(networksView(reports), reports));
      break;
    }
    case 'rmpeer': {
      // Asked of this host's ipam: the host it runs on is the one rmpeer never reclaims.
      const r = await rpcClient(nc, env.WEAVE_HOST, ipamRpc, { timeoutMs: 60_000 }).rmpeer({ host: args.host, force: args.force });
      print(r, () => rmpeerView(r, now));
      break;
    }
    case 'ps': {
      const reports = await meshReports(nc, env.WEAVE_HOST);
      print(reports.map((r) => ({ host: r.host, endpoints: r.netwire?.endpoints ?? null, problems: r.problems })), () => withProblems(psView(reports), reports));
      break;
    }
  }
  await nc.close();
}

main().catch((e: Error) => {
  console.error(`weave: ${describeError(e)}`);
  process.exit(1);
});

/** A mesh-wide table, then the hosts that did not (fully) answer, so a gap is never silent. */
function withProblems(view: string, reports: readonly HostReport[]): string {
  const problems = reports.flatMap((r) => r.problems);
  return [view, ...problems.map((p, i) => `${i === 0 ? '\n' : ''}problem: ${p}`)].join('\n');
}
