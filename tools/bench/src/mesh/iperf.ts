import { z } from 'zod';
import { Children, stopChild, tailOf, waitExit } from './children';
import { CommandError, inNs, run, sleep } from './exec';

/** What is measured on every path. */
export const TESTS = {
  tcp1: { label: 'TCP, 1 stream', kind: 'tcp', args: [] },
  tcp4: { label: 'TCP, 4 streams', kind: 'tcp', args: ['-P', '4'] },
  udp64: { label: 'UDP, 64 B payload', kind: 'udp', args: ['-u', '-l', '64', '-b', '0'] },
} as const;
export type TestName = keyof typeof TESTS;
export const TEST_NAMES = Object.keys(TESTS) as TestName[];

/** One iperf3 run, as the receiver saw it (UDP: also what was sent). */
export type Measured =
  | { kind: 'tcp'; bitsPerSecond: number; retransmits: number }
  | { kind: 'udp'; bitsPerSecond: number; seconds: number; sentPps: number; deliveredPps: number; lossPercent: number };

const Sum = z.object({ seconds: z.number().positive(), bytes: z.number().nonnegative(), bits_per_second: z.number().nonnegative() });
const TcpReport = z.object({
  end: z.object({ sum_sent: Sum.extend({ retransmits: z.number().int().optional() }), sum_received: Sum }),
});
const UdpSum = Sum.extend({ packets: z.number().int().nonnegative(), lost_packets: z.number().int(), lost_percent: z.number() });
const UdpReport = z.object({ end: z.object({ sum_sent: UdpSum, sum_received: UdpSum }) });
const ErrorReport = z.object({ error: z.string() });

export class IperfError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'IperfError';
  }
}

/** Parses `iperf3 --json` client output (iperf3 ≥ 3.12: end.sum_sent and end.sum_received). */
export function parseIperf(kind: 'tcp' | 'udp', text: string): Measured {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new IperfError(`iperf3 printed no JSON: ${text.slice(0, 200)}`, { cause });
  }
  const failed = ErrorReport.safeParse(json);
  if (failed.success) throw new IperfError(`iperf3: ${failed.data.error}`);
  if (kind === 'tcp') {
    const r = TcpReport.safeParse(json);
    if (!r.success) throw new IperfError(`unexpected iperf3 TCP report: ${z.prettifyError(r.error)}`, { cause: r.error });
    return { kind, bitsPerSecond: r.data.end.sum_received.bits_per_second, retransmits: r.data.end.sum_sent.retransmits ?? 0 };
  }
  const r = UdpReport.safeParse(json);
  if (!r.success) throw new IperfError(`unexpected iperf3 UDP report: ${z.prettifyError(r.error)}`, { cause: r.error });
  const { sum_sent: sent, sum_received: recv } = r.data.end;
  return {
    kind,
    bitsPerSecond: recv.bits_per_second,
    seconds: recv.seconds,
    sentPps: sent.packets / sent.seconds,
    deliveredPps: Math.max(0, recv.packets - recv.lost_packets) / recv.seconds,
    lossPercent: recv.lost_percent,
  };
}

const PORT = '5201';

async function waitListening(ns: string, server: ReturnType<Children['spawn']>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (server.exitCode !== null) throw new IperfError(`iperf3 server in ${ns} exited (${server.exitCode})`);
    const out = await run(inNs(ns, ['ss', '-Hltn', `sport = :${PORT}`]));
    if (out.trim()) return;
    await sleep(50);
  }
  throw new IperfError(`iperf3 server in ${ns} did not listen on ${PORT} within 5 s`);
}

export interface IperfRun {
  clientNs: string;
  serverNs: string;
  target: string;
  test: TestName;
  seconds: number;
  /** Called right before the client starts (after the server listens). */
  onClientStart?: () => Promise<void> | void;
  signal?: AbortSignal;
}

/** One measurement: a one-off iperf3 server in serverNs, the client in clientNs. */
export async function iperf(children: Children, o: IperfRun): Promise<Measured> {
  const spec = TESTS[o.test];
  const server = children.spawn(inNs(o.serverNs, ['iperf3', '-s', '-1', '-p', PORT]));
  const serverErr = tailOf(server.stderr);
  server.stdout?.resume();
  try {
    await waitListening(o.serverNs, server);
    const client = ['iperf3', '-c', o.target, '-p', PORT, '-t', String(o.seconds), '--json', '--connect-timeout', '5000', ...spec.args];
    await o.onClientStart?.();
    const out = await run(inNs(o.clientNs, client), { timeoutMs: (o.seconds + 30) * 1000, signal: o.signal }).catch((e: unknown) => {
      // iperf3 --json reports its own failures as JSON on stdout with a non-zero exit.
      if (e instanceof CommandError && e.stdout.trim().startsWith('{')) return e.stdout;
      throw e;
    });
    const m = parseIperf(spec.kind, out);
    await waitExit(server, 5000);
    return m;
  } catch (e) {
    const extra = serverErr().trim();
    throw extra ? new IperfError(`${(e as Error).message} (server: ${extra})`, { cause: e }) : e;
  } finally {
    await stopChild(server);
  }
}
