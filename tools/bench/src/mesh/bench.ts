/**
 * The run itself: preflight (root, iperf3, a crashed run's leftovers), the topology, the sleeve
 * processes, then every test on every path in turn (paths interleaved per test, their order
 * rotated per round), sampling CPU and kernel drop counters around each iperf3 client.
 */
import { Children } from './children';
import { receiverCounters, type ReceiverCounters, type SleeveDrops } from './counters';
import { run } from './exec';
import { iperf, TESTS, type Measured, type TestName } from './iperf';
import type { MeshOptions } from './options';
import { ratios, sleeveCpu, sleeveDropTotals, summarize, type Failure, type Results, type Run } from './report';
import { SleeveHost, type SleeveCounters } from './sleeves';
import { activate, createTopology, deactivate, deleteNamespace, isSleevePath, leftoverNamespaces, MTU, receiverDevice, target, type Names, type PathName, type SleevePath, type Undo } from './topology';

export interface Bench {
  o: MeshOptions;
  n: Names;
  children: Children;
  /** The sleeve processes of each sleeve path measured (the plain one, the encrypted one). */
  sleeves: Partial<Record<SleevePath, SleeveHost[]>>;
  abort: AbortController;
}

const rotate = <T>(xs: readonly T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length]!);

async function preflight(log: (msg: string) => void): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (it creates network namespaces)');
  await run(['iperf3', '--version']).catch((e: Error) => {
    throw new Error(`iperf3 is missing (npm run bench:mesh installs it): ${e.message}`, { cause: e });
  });
  for (const ns of leftoverNamespaces()) {
    log(`removing ${ns}, left by an earlier run`);
    await deleteNamespace(ns);
  }
}

/** What is read before and after each run: time, and the counters the run is judged by. */
interface Sample {
  t: number;
  cpu: number[];
  sleeveDrops: SleeveDrops[];
  receiver?: ReceiverCounters;
}

async function sample(b: Bench, path: PathName, test: TestName): Promise<Sample> {
  const sleeves = isSleevePath(path) ? (b.sleeves[path] ?? []) : [];
  const receiver = TESTS[test].kind === 'udp' ? await receiverCounters(b.n.container[2], receiverDevice(path)) : undefined;
  const sleeveDrops = sleeves.map((s) => s.drops());
  return { sleeveDrops, receiver, cpu: sleeves.map((s) => s.cpuSeconds()), t: performance.now() / 1000 };
}

type Observed = Pick<Run, 'sleeveCpu' | 'drops' | 'arrivedPps'>;

function difference(before: Sample, after: Sample, m: Measured): Observed {
  const pair = <T>(f: (i: 0 | 1) => T): [T, T] => [f(0), f(1)];
  const out: Observed = { drops: {} };
  if (before.receiver && after.receiver) {
    out.drops!.receiverUdpRcvbuf = after.receiver.udpRcvbufErrors - before.receiver.udpRcvbufErrors;
    if (m.kind === 'udp') out.arrivedPps = (after.receiver.rxPackets - before.receiver.rxPackets) / m.seconds;
  }
  if (before.cpu.length === 2) {
    out.sleeveCpu = { wallSeconds: after.t - before.t, cpuSeconds: pair((i) => after.cpu[i]! - before.cpu[i]!) };
    out.drops!.sleeve = pair((i) => ({
      tapTxDropped: after.sleeveDrops[i]!.tapTxDropped - before.sleeveDrops[i]!.tapTxDropped,
      udpRcvbufErrors: after.sleeveDrops[i]!.udpRcvbufErrors - before.sleeveDrops[i]!.udpRcvbufErrors,
    }));
  }
  return out;
}

async function measure(b: Bench, round: number, test: TestName, path: PathName): Promise<Run> {
  let before: Sample | undefined;
  await activate(b.n, path);
  try {
    const measured = await iperf(b.children, {
      clientNs: b.n.container[1],
      serverNs: b.n.container[2],
      target: target(path),
      test,
      seconds: b.o.seconds,
      signal: b.abort.signal,
      onClientStart: async () => void (before = await sample(b, path, test)),
    });
    return { round, path, test, measured, ...difference(before!, await sample(b, path, test), measured) };
  } finally {
    if (!b.abort.signal.aborted) await deactivate(b.n, path);
  }
}

function progressLine(r: Run): string {
  const m = r.measured;
  const rate = m.kind === 'udp' ? `${(m.sentPps / 1e6).toFixed(3)} Mpps sent, ${((r.arrivedPps ?? 0) / 1e6).toFixed(3)} into c2, ${(m.deliveredPps / 1e6).toFixed(3)} to iperf3` : `${(m.bitsPerSecond / 1e9).toFixed(2)} Gbit/s`;
  const cpu = r.sleeveCpu?.cpuSeconds.map((c) => `${((100 * c) / r.sleeveCpu!.wallSeconds).toFixed(0)}%`).join(' / ');
  const d = r.drops;
  const drops = [
    d?.receiverUdpRcvbuf ? `receiver socket ${d.receiverUdpRcvbuf}` : '',
    ...(d?.sleeve ?? []).flatMap((s, i) => [s.tapTxDropped ? `h${i + 1} TAP ${s.tapTxDropped}` : '', s.udpRcvbufErrors ? `h${i + 1} sleeve socket ${s.udpRcvbufErrors}` : '']),
  ].filter(Boolean);
  return `${r.test} ${r.path}: ${rate}${cpu ? `; sleeve CPU ${cpu}` : ''}${drops.length ? `; kernel drops: ${drops.join(', ')}` : ''}`;
}

/** A path that failed once is reported and left out of the rest of the run; the others go on. */
async function pathFailed(b: Bench, f: Failure, log: (msg: string) => void): Promise<void> {
  log(`${f.path} failed (${f.test}, round ${f.round}): ${f.error}; leaving it out from now on`);
  if (!isSleevePath(f.path)) return;
  for (const s of b.sleeves[f.path] ?? []) {
    const c = await s.counters().catch((e: Error) => ({ unavailable: e.message }));
    log(`sleeve on host ${s.host}: ${Object.entries(c).filter(([, v]) => v !== '0').map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
}

async function measureAll(b: Bench, log: (msg: string) => void): Promise<{ runs: Run[]; failures: Failure[] }> {
  const runs: Run[] = [];
  const failures: Failure[] = [];
  for (let round = 1; round <= b.o.rounds; round++) {
    for (const test of b.o.tests) {
      for (const path of rotate(b.o.paths, round - 1).filter((p) => !failures.some((f) => f.path === p))) {
        if (b.abort.signal.aborted) throw b.abort.signal.reason;
        try {
          runs.push(await measure(b, round, test, path));
        } catch (e) {
          if (b.abort.signal.aborted) throw b.abort.signal.reason;
          failures.push({ path, test, round, error: (e as Error).message });
          await pathFailed(b, failures.at(-1)!, log);
          continue;
        }
        log(`${b.o.rounds > 1 ? `round ${round}/${b.o.rounds} ` : ''}${progressLine(runs.at(-1)!)}`);
      }
    }
  }
  return { runs, failures };
}

async function sleeveReport(sleeves: SleeveHost[], runs: Run[], log: (msg: string) => void): Promise<Results['sleeve']> {
  if (sleeves.length !== 2) return undefined;
  const [s1, s2] = sleeves as [SleeveHost, SleeveHost];
  const counters: [SleeveCounters, SleeveCounters] = [await s1.counters(), await s2.counters()];
  counters.forEach((c, i) => {
    const bad = Object.entries(c).filter(([k, v]) => /^(drop|malformed)|Errors$/.test(k) && v !== '0');
    if (bad.length) log(`sleeve on host ${i + 1} counted: ${bad.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  });
  return {
    cpu: sleeveCpu(runs),
    peakRssBytes: [s1.peakRss(), s2.peakRss()],
    startRssBytes: [s1.rssAtStart, s2.rssAtStart],
    drops: sleeveDropTotals(runs),
    counters,
  };
}

export async function bench(b: Bench, undo: Undo, log: (msg: string) => void): Promise<Results> {
  await preflight(log);
  log(`building namespaces ${b.n.host[1]}, ${b.n.host[2]}, ${b.n.container[1]}, ${b.n.container[2]}`);
  await createTopology(b.n, b.o.paths, undo);
  for (const path of b.o.paths.filter(isSleevePath)) {
    const hosts = (b.sleeves[path] = [] as SleeveHost[]);
    for (const h of [1, 2] as const) hosts.push(await SleeveHost.start(b.children, b.n, h, path));
    log(`${path} processes: pid ${hosts.map((s) => s.pid).join(', ')}`);
  }
  const { runs, failures } = await measureAll(b, log);
  const cells = summarize(runs);
  const mtu = Object.fromEntries(b.o.paths.map((p) => [p, MTU[p]]));
  const sleeve = await sleeveReport(b.sleeves.sleeve ?? [], runs.filter((r) => r.path === 'sleeve'), log).catch((e: Error) => {
    log(`no sleeve report (a sleeve process is gone?): ${e.message}`);
    return undefined;
  });
  return { seconds: b.o.seconds, rounds: b.o.rounds, mtu, cells, ratios: ratios(runs), sleeve, failures, runs };
}
