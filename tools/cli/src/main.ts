import { existsSync, writeFileSync } from 'node:fs';
import { AuthorizationError, connect } from '@nats-io/transport-node';
import { replayEvents, rpcClient, subscribeEvents } from '@weave/bus';
import { CommonEnv, natsAuth, readEnv } from '@weave/config';
import { EventEnvelope, ipamRpc, Subjects } from '@weave/contracts';
import { describeError } from '@weave/errors';
import { DEFAULT_CREDS, parseArgs } from './args';
import { eventLine, rmpeerProgressLine } from './format';
import { meshGraph, meshSvg } from './graph';
import { meshReports, reportOf } from './reports';
import { HostReport, networksView, peersView, psView, rmpeerView, statusView } from './views';

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
    const onEvent = (e: EventEnvelope) => console.log(args.json ? JSON.stringify(e) : eventLine(e));
    const onInvalid = (s: string, err: unknown) => console.error(`ignored a malformed event on ${s}: ${describeError(err)}`);
    // With --since, history and live come from one ordered consumer of the stored events, so the seam has no gap and no repeat.
    if (args.since) await replayEvents(nc, { subject, since: args.since, onEvent, onInvalid });
    else subscribeEvents(nc, onEvent, onInvalid, subject);
    process.on('SIGINT', () => void nc.close().then(() => process.exit(0)));
    return;
  }
  const now = new Date();
  const print = (json: unknown, text: () => string) => console.log(args.json ? JSON.stringify(json, null, 2) : text());
  switch (args.command) {
    case 'status': {
      const reports = args.all || args.graph ? await meshReports(nc, env.WEAVE_HOST) : [await reportOf(nc, env.WEAVE_HOST)];
      if (args.graph) writeGraph(args.graph, reports);
      else print(args.all ? reports : reports[0], () => reports.map((r) => statusView(r, now)).join('\n\n'));
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
      // Asked of this host's ipam: the host it runs on is the one rmpeer never reclaims. A reclaim
      // of many blocks takes a while: its steps are shown as ipam publishes them.
      process.stderr.write(`asking ${env.WEAVE_HOST}'s ipam to reclaim ${args.host}'s addresses (up to 60 s)…\n`);
      const progress = subscribeEvents(
        nc,
        (e) => {
          const line = rmpeerProgressLine(e);
          if (line) process.stderr.write(`  ${line}\n`);
        },
        () => undefined,
        Subjects.event(env.WEAVE_HOST, 'ipam', '>'),
      );
      const r = await rpcClient(nc, env.WEAVE_HOST, ipamRpc, { timeoutMs: 60_000 })
        .rmpeer({ host: args.host, force: args.force })
        .finally(() => progress.unsubscribe());
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

/** The mesh as SVG to `target` (`-`: stdout), and a line saying what was drawn when it went to a file. */
function writeGraph(target: string, reports: readonly HostReport[]): void {
  const graph = meshGraph(reports);
  const svg = meshSvg(graph);
  if (target === '-') return void process.stdout.write(svg);
  writeFileSync(target, svg);
  console.log(`wrote ${target}: ${graph.hosts.length} host(s), ${graph.links.length} link(s)`);
}
