import { median } from '../stats';
import type { SleeveDrops } from './counters';
import { TESTS, type Measured, type TestName } from './iperf';
import type { PathName } from './topology';

/** One iperf3 run; sleeve runs also carry the CPU both sleeve processes used meanwhile. */
export interface Run {
  /** 1-based. */
  round: number;
  path: PathName;
  test: TestName;
  measured: Measured;
  sleeveCpu?: { wallSeconds: number; cpuSeconds: [number, number] };
  /** UDP: frames per second that reached c2's interface (whether or not iperf3 then kept up). */
  arrivedPps?: number;
  /** Kernel drops during the run: the receiving iperf3's socket (UDP tests), each sleeve's TAP and socket. */
  drops?: { receiverUdpRcvbuf?: number; sleeve?: [SleeveDrops, SleeveDrops] };
}

/** Medians over the rounds for one path and test. UDP: pps into c2, pps iperf3 received, its loss. */
export interface Cell {
  path: PathName;
  test: TestName;
  bitsPerSecond: number;
  arrivedPps?: number;
  pps?: number;
  lossPercent?: number;
}

export const RATIOS = [
  { of: 'sleeve', to: 'vxlan', target: { tcp: 0.7, udp: 0.6 } },
  { of: 'fastpath', to: 'vxlan', target: { tcp: 0.95, udp: 0.95 } },
  { of: 'sealed', to: 'vxlan', target: { tcp: 0.5, udp: 0.5 } },
  { of: 'vxlan', to: 'veth' },
  { of: 'sleeve', to: 'veth' },
] as const satisfies readonly { of: PathName; to: PathName; target?: Record<'tcp' | 'udp', number> }[];

export interface Ratio {
  test: TestName;
  of: PathName;
  to: PathName;
  /** TCP: of/to in bit/s; UDP: in packets/s that reached c2. Median of the rounds' ratios. */
  value: number;
  target?: number;
  met?: boolean;
}

export interface SleeveCpu {
  test: TestName;
  /** CPU (user + system) of host 1's (sending) and host 2's (receiving) sleeve, % of one core. */
  percent: [number, number];
}

export function summarize(runs: readonly Run[]): Cell[] {
  const keys = [...new Set(runs.map((r) => `${r.path}/${r.test}`))];
  return keys.map((k) => {
    const rs = runs.filter((r) => `${r.path}/${r.test}` === k);
    const { path, test } = rs[0]!;
    const cell: Cell = { path, test, bitsPerSecond: median(rs.map((r) => r.measured.bitsPerSecond)) };
    const udp = rs.flatMap((r) => (r.measured.kind === 'udp' ? [r.measured] : []));
    const arrived = rs.flatMap((r) => (r.arrivedPps === undefined ? [] : [r.arrivedPps]));
    if (arrived.length) cell.arrivedPps = median(arrived);
    if (udp.length) {
      cell.pps = median(udp.map((u) => u.deliveredPps));
      cell.lossPercent = median(udp.map((u) => u.lossPercent));
    }
    return cell;
  });
}

/**
 * UDP is compared by the frames that reached the receiving container: on a small machine the
 * receiving iperf3 itself is what drops most packets (on every path), which says little about the path.
 */
const metric = (r: Run): number => (r.measured.kind === 'udp' ? (r.arrivedPps ?? r.measured.deliveredPps) : r.measured.bitsPerSecond);

/**
 * Each ratio is the median over the rounds of that round's ratio: the paths of one round ran
 * seconds apart, so drift on the machine between rounds cancels out.
 */
export function ratios(runs: readonly Run[]): Ratio[] {
  const tests = [...new Set(runs.map((r) => r.test))];
  const rounds = [...new Set(runs.map((r) => r.round))];
  const find = (path: PathName, test: TestName, round: number) => runs.find((r) => r.path === path && r.test === test && r.round === round);
  return tests.flatMap((test) =>
    RATIOS.flatMap((pair): Ratio[] => {
      const each = rounds.flatMap((round) => {
        const a = find(pair.of, test, round);
        const b = find(pair.to, test, round);
        return a && b && metric(b) > 0 ? [metric(a) / metric(b)] : [];
      });
      if (!each.length) return [];
      const value = median(each);
      const target = 'target' in pair ? pair.target[TESTS[test].kind] : undefined;
      return [{ test, of: pair.of, to: pair.to, value, ...(target === undefined ? {} : { target, met: value >= target }) }];
    }),
  );
}

export function sleeveCpu(runs: readonly Run[]): SleeveCpu[] {
  const tests = [...new Set(runs.filter((r) => r.sleeveCpu).map((r) => r.test))];
  return tests.map((test) => {
    const use = runs.flatMap((r) => (r.test === test && r.sleeveCpu ? [r.sleeveCpu] : []));
    const wall = use.reduce((s, u) => s + u.wallSeconds, 0);
    const pct = (i: 0 | 1) => (100 * use.reduce((s, u) => s + u.cpuSeconds[i], 0)) / wall;
    return { test, percent: [pct(0), pct(1)] };
  });
}

/** Each sleeve host's kernel drops (TAP queue, underlay socket) summed over all sleeve runs. */
export function sleeveDropTotals(runs: readonly Run[]): [SleeveDrops, SleeveDrops] {
  const total = (i: 0 | 1): SleeveDrops => {
    const ds = runs.flatMap((r) => (r.drops?.sleeve ? [r.drops.sleeve[i]] : []));
    return { tapTxDropped: ds.reduce((s, d) => s + d.tapTxDropped, 0), udpRcvbufErrors: ds.reduce((s, d) => s + d.udpRcvbufErrors, 0) };
  };
  return [total(0), total(1)];
}

/** A path whose run failed (it is left out of the rest of the run). */
export interface Failure {
  path: PathName;
  test: TestName;
  round: number;
  error: string;
}

export interface Results {
  seconds: number;
  rounds: number;
  mtu: Partial<Record<PathName, number>>;
  cells: Cell[];
  ratios: Ratio[];
  sleeve?: {
    cpu: SleeveCpu[];
    peakRssBytes: [number, number];
    startRssBytes: [number, number];
    drops: [SleeveDrops, SleeveDrops];
    /** The addon's own counters at the end (stats(), as decimal strings). */
    counters: [Record<string, unknown>, Record<string, unknown>];
  };
  failures: Failure[];
  runs: Run[];
}

// ---------------------------------------------------------------------------------------------
// The table.

const gbit = (bps: number) => `${(bps / 1e9).toFixed(2)} Gbit/s`;
const mpps = (pps: number | undefined) => (pps === undefined ? '-' : `${(pps / 1e6).toFixed(3)} Mpps`);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('   ').trimEnd()).join('\n');
}

/** One row per TCP test; two per UDP test: frames into c2, and what iperf3 received of them. */
function throughputTable(res: Results): string {
  const paths = [...new Set(res.cells.map((c) => c.path))];
  const tests = [...new Set(res.cells.map((c) => c.test))];
  const row = (label: string, t: TestName, show: (c: Cell) => string) => [
    label,
    ...paths.map((p) => {
      const c = res.cells.find((x) => x.path === p && x.test === t);
      return c ? show(c) : '-';
    }),
  ];
  const rows = tests.flatMap((t) =>
    TESTS[t].kind === 'tcp'
      ? [row(TESTS[t].label, t, (c) => gbit(c.bitsPerSecond))]
      : [
          row(`${TESTS[t].label}, into c2`, t, (c) => mpps(c.arrivedPps)),
          row(`${TESTS[t].label}, to iperf3`, t, (c) => `${mpps(c.pps)}, ${(c.lossPercent ?? 0).toFixed(1)}% lost`),
        ],
  );
  return table([['', ...paths], ...rows]);
}

function ratioTable(res: Results): string {
  const tests = [...new Set(res.ratios.map((r) => r.test))];
  const pairs = RATIOS.filter((p) => res.ratios.some((r) => r.of === p.of && r.to === p.to));
  const head = pairs.flatMap((p) => ('target' in p ? [`${p.of}/${p.to}`, 'target', 'met'] : [`${p.of}/${p.to}`]));
  const rows = tests.map((t) => [
    TESTS[t].label,
    ...pairs.flatMap((p) => {
      const r = res.ratios.find((x) => x.test === t && x.of === p.of && x.to === p.to);
      const v = r ? `${r.value.toPrecision(3)}x` : '-';
      if (!('target' in p)) return [v];
      return [v, r?.target !== undefined ? `>= ${r.target}x` : '', r?.met === undefined ? '' : r.met ? 'yes' : 'NO'];
    }),
  ]);
  return table([['ratio (TCP: bit/s, UDP: pps into c2)', ...head], ...rows]);
}

function sleeveTable(s: NonNullable<Results['sleeve']>): string {
  const pct = (x: number) => `${x.toFixed(0)}%`;
  return table([
    ['sleeve processes', 'host 1 (sends)', 'host 2 (receives)'],
    ...s.cpu.map((c) => [`CPU, ${TESTS[c.test].label}`, pct(c.percent[0]), pct(c.percent[1])]),
    ['peak RSS (VmHWM)', mib(s.peakRssBytes[0]), mib(s.peakRssBytes[1])],
    ['  RSS right after start', mib(s.startRssBytes[0]), mib(s.startRssBytes[1])],
    ['kernel drops, its TAP queue', String(s.drops[0].tapTxDropped), String(s.drops[1].tapTxDropped)],
    ['kernel drops, its UDP socket', String(s.drops[0].udpRcvbufErrors), String(s.drops[1].udpRcvbufErrors)],
  ]);
}

/** The human-readable report for stdout. */
export function formatResults(res: Results): string {
  const mtu = Object.entries(res.mtu).map(([p, m]) => `${p} ${m}`).join(', ');
  const parts = [
    `container to container (iperf3 c1 -> c2, ${res.seconds} s per run, ${res.rounds === 1 ? '1 round' : `median of ${res.rounds} rounds`}); container MTU: ${mtu}`,
    throughputTable(res),
  ];
  if (res.failures.length) parts.push(res.failures.map((f) => `${f.path} FAILED (${f.test}, round ${f.round}): ${f.error}`).join('\n'));
  if (res.ratios.length) parts.push(ratioTable(res));
  if (res.sleeve) parts.push(`${sleeveTable(res.sleeve)}\n(CPU: user + system of each sleeve process while its runs went on, as % of one core; RSS includes node
and tsx; drops: frames the sleeve did not read in time from its TAP or its socket, over all its runs)`);
  return parts.join('\n\n');
}
