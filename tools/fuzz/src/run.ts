import { Case, generateCase } from './cases';
import { FUZZED_SERVICES, type FuzzStack } from './fuzz-stack';
import { send } from './send';
import { differences, snapshot, Snapshot } from './state';
import { allTargets } from './targets';
import { verdict } from './verdict';

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Cases in flight at once; liveness is checked after each such batch. */
  concurrency: number;
  /** State is compared after every this many cases, so a change can be placed. */
  stateEvery: number;
  timeoutMs: number;
  /** Replays only these case indexes (of the same seed and count). */
  only?: readonly number[];
  log: (msg: string) => void;
}

export interface TargetFigures {
  cases: number;
  /** Cases that expect an answer and got one, in whatever format. */
  answered: number;
  /** Cases sent without a reply subject (presence, events, some RPCs): nobody answers those. */
  unanswerable: number;
  violations: number;
}

export interface Finding {
  index: number;
  target: string;
  what: string;
  problem: string;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  elapsedMs: number;
  targets: Record<string, TargetFigures>;
  violations: Finding[];
  crashes: string[];
  stateChanges: string[];
  /** The last lines each service logged, when anything went wrong. */
  logs: Record<string, string>;
}

export const failed = (r: FuzzReport): boolean => r.violations.length + r.crashes.length + r.stateChanges.length > 0;

/** Sends the cases in batches; stops early only when a service died, since every later case would fail too. */
export async function runCases(env: FuzzStack, o: FuzzOptions): Promise<FuzzReport> {
  const targets = allTargets(env.fixture);
  const report: FuzzReport = { seed: o.seed, cases: 0, elapsedMs: 0, targets: {}, violations: [], crashes: [], stateChanges: [], logs: {} };
  for (const t of targets) report.targets[t.name] = { cases: 0, answered: 0, unanswerable: 0, violations: 0 };
  const endpoints = { socket: env.stack.socket, nc: env.stack.nc, timeoutMs: o.timeoutMs };
  const indexes = o.only ?? Array.from({ length: o.cases }, (_, i) => i);
  let baseline = await snapshot(env.stack);
  let checkedUpTo = 0;
  const started = performance.now();
  for (let at = 0; at < indexes.length; at += o.concurrency) {
    const batch = indexes.slice(at, at + o.concurrency).map((i) => generateCase(o.seed, i, targets));
    await Promise.all(batch.map(async (c) => record(report, c, verdict(c, await send(endpoints, c)))));
    const dead = FUZZED_SERVICES.filter((s) => !env.stack.isAlive(s));
    if (dead.length > 0) {
      for (const s of dead) report.crashes.push(`${s} died during cases ${batch[0]!.index}-${batch[batch.length - 1]!.index}:\n${logTail(env, s, 15)}`);
      break;
    }
    const done = Math.min(at + o.concurrency, indexes.length);
    if (done - checkedUpTo >= o.stateEvery || done === indexes.length) {
      baseline = await compareState(env, report, baseline, `cases ${indexes[checkedUpTo]}-${indexes[done - 1]}`);
      checkedUpTo = done;
      o.log(`${done} of ${indexes.length} cases sent, ${report.violations.length} violations`);
    }
  }
  report.elapsedMs = performance.now() - started;
  if (failed(report)) for (const s of FUZZED_SERVICES) report.logs[s] = logTail(env, s, 10);
  return report;
}

/** A service's last log lines, each cut short: a refusal's line can quote a megabyte of input. */
const logTail = (env: FuzzStack, s: (typeof FUZZED_SERVICES)[number], lines: number): string =>
  env.stack.logTail(s, lines).split('\n').map((l) => l.slice(0, 240)).join('\n');

function record(report: FuzzReport, c: Case, problem: string | null): void {
  const t = report.targets[c.target]!;
  report.cases++;
  t.cases++;
  if (c.expect.kind === 'no-reply') t.unanswerable++;
  else if (!problem?.startsWith('no answer')) t.answered++;
  if (problem === null) return;
  t.violations++;
  report.violations.push({ index: c.index, target: c.target, what: c.what, problem });
}

/** Records a change since `before` and returns the new baseline, so a later change is told apart. */
async function compareState(env: FuzzStack, report: FuzzReport, before: Snapshot, during: string): Promise<Snapshot> {
  // Messages sent without a reply subject may still be in flight to their subscriber.
  await env.stack.nc.flush();
  const after = await snapshot(env.stack);
  const diff = differences(before, after);
  if (diff.length > 0) report.stateChanges.push(`during ${during}:\n  ${diff.join('\n  ')}`);
  return after;
}
