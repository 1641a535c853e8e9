import { netDevCounters, udpCounters } from '../src/mesh/counters';
import { parseIperf } from '../src/mesh/iperf';
import { parseOptions, UsageError } from '../src/mesh/options';
import { cpuTicks, statusBytes } from '../src/mesh/proc';
import { formatResults, ratios, sleeveCpu, sleeveDropTotals, summarize, type Run } from '../src/mesh/report';

const sum = (o: object) => ({ start: 0, end: 5, seconds: 5, bytes: 1e9, bits_per_second: 1.6e9, ...o });

describe('parseIperf', () => {
  test('TCP: the receiver side, and the sender retransmits', () => {
    const json = JSON.stringify({ end: { sum_sent: sum({ retransmits: 7 }), sum_received: sum({ bits_per_second: 1.5e9 }) } });
    expect(parseIperf('tcp', json)).toEqual({ kind: 'tcp', bitsPerSecond: 1.5e9, retransmits: 7 });
  });

  test('UDP: packets/s delivered (sent minus lost), sent, and loss', () => {
    const json = JSON.stringify({
      end: {
        sum: sum({}),
        sum_sent: sum({ packets: 1_000_000, lost_packets: 0, lost_percent: 0 }),
        sum_received: sum({ seconds: 4, packets: 1_000_000, lost_packets: 200_000, lost_percent: 20 }),
      },
    });
    expect(parseIperf('udp', json)).toEqual({ kind: 'udp', bitsPerSecond: 1.6e9, seconds: 4, sentPps: 200_000, deliveredPps: 200_000, lossPercent: 20 });
  });

  test("iperf3's own error report becomes the message", () => {
    expect(() => parseIperf('tcp', JSON.stringify({ start: {}, error: 'unable to connect to server: Connection refused' }))).toThrow(
      'iperf3: unable to connect to server: Connection refused',
    );
  });

  test('a report without the sums is refused, naming what is missing', () => {
    expect(() => parseIperf('udp', JSON.stringify({ end: { sum: sum({}) } }))).toThrow(/unexpected iperf3 UDP report[\s\S]*sum_sent/);
  });
});

describe('/proc parsing', () => {
  test('utime + stime, with a command name holding spaces and parentheses', () => {
    const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 350 120 0 0 20 0 11 0 123 456 789';
    expect(cpuTicks(stat)).toBe(470);
  });

  test('VmHWM and VmRSS in bytes', () => {
    const status = 'Name:\tnode\nVmPeak:\t  999 kB\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n';
    expect(statusBytes(status, 'VmHWM')).toBe(2 << 20);
    expect(statusBytes(status, 'VmRSS')).toBe(1 << 20);
  });
});

describe('kernel drop counters', () => {
  test('UDP counters of /proc/net/snmp by name', () => {
    const snmp = [
      'Tcp: RtoAlgorithm RtoMin',
      'Tcp: 1 200',
      'Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
      'Udp: 81412 0 13240 16 13240 0 0 0 0',
      'UdpLite: InDatagrams NoPorts',
      'UdpLite: 0 0',
    ].join('\n');
    expect(udpCounters(snmp)).toMatchObject({ InDatagrams: 81412, RcvbufErrors: 13240, SndbufErrors: 0 });
  });

  test("a device's received packets and transmit drops in /proc/net/dev", () => {
    const dev = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0',
      'sleeve0: 1777 17 0 0 0 0 0 0 61035665 547620 0 302959 0 0 0 0',
    ].join('\n');
    expect(netDevCounters(dev, 'sleeve0')).toEqual({ rxPackets: 17, txDropped: 302959 });
    expect(() => netDevCounters(dev, 'vxlan0')).toThrow('no vxlan0');
  });
});

describe('options', () => {
  test('defaults', () => {
    expect(parseOptions([])).toEqual({ seconds: 5, paths: ['sleeve', 'sealed', 'fastpath', 'vxlan', 'veth'], tests: ['tcp1', 'tcp4', 'udp64'], rounds: 1, json: false });
  });

  test('lists, numbers and a bare flag', () => {
    expect(parseOptions(['--seconds=2', '--paths=vxlan,sleeve', '--tests=udp64', '--rounds=3', '--json'])).toMatchObject({
      seconds: 2,
      paths: ['vxlan', 'sleeve'],
      tests: ['udp64'],
      rounds: 3,
      json: true,
    });
  });

  test.each([['--seconds=0'], ['--paths=sleeve,wireguard'], ['--paths=veth,veth'], ['--paths='], ['--second=5'], ['seconds=5']])('refuses %s', (arg) => {
    expect(() => parseOptions([arg])).toThrow(UsageError);
  });
});

const tcp = (bitsPerSecond: number) => ({ kind: 'tcp' as const, bitsPerSecond, retransmits: 0 });
const udp = (deliveredPps: number) => ({ kind: 'udp' as const, bitsPerSecond: deliveredPps * 512, seconds: 5, sentPps: 1e6, deliveredPps, lossPercent: 10 });

describe('summary and ratios', () => {
  const runs: Run[] = [
    ...[6e9, 8e9, 7e9].map((b, round): Run => ({ round, path: 'sleeve', test: 'tcp1', measured: tcp(b), sleeveCpu: { wallSeconds: 5, cpuSeconds: [4, 2] } })),
    ...[10e9, 10e9, 10e9].map((b, round): Run => ({ round, path: 'vxlan', test: 'tcp1', measured: tcp(b) })),
    ...[20e9, 20e9, 20e9].map((b, round): Run => ({ round, path: 'veth', test: 'tcp1', measured: tcp(b) })),
    { round: 0, path: 'sleeve', test: 'udp64', measured: udp(100_000), arrivedPps: 150_000, sleeveCpu: { wallSeconds: 5, cpuSeconds: [5, 5] } },
    { round: 0, path: 'vxlan', test: 'udp64', measured: udp(100_000), arrivedPps: 200_000 },
  ];

  test('medians per path and test; ratios (medians of each round\'s ratio) with targets (TCP bit/s, UDP pps into c2)', () => {
    const cells = summarize(runs);
    expect(cells.find((c) => c.path === 'sleeve' && c.test === 'tcp1')?.bitsPerSecond).toBe(7e9);
    expect(ratios(runs)).toEqual([
      { test: 'tcp1', of: 'sleeve', to: 'vxlan', value: 0.7, target: 0.7, met: true },
      { test: 'tcp1', of: 'vxlan', to: 'veth', value: 0.5 },
      { test: 'tcp1', of: 'sleeve', to: 'veth', value: 0.35 },
      { test: 'udp64', of: 'sleeve', to: 'vxlan', value: 0.75, target: 0.6, met: true },
    ]);
  });

  test("drift between rounds cancels out: the median of each round's ratio, not the ratio of medians", () => {
    const drift: Run[] = [1e9, 10e9, 5e9].flatMap((b, i): Run[] => [
      { round: i + 1, path: 'sleeve', test: 'tcp4', measured: tcp(b) },
      { round: i + 1, path: 'vxlan', test: 'tcp4', measured: tcp(i === 2 ? b : 2 * b) },
    ]);
    expect(ratios(drift)).toEqual([{ test: 'tcp4', of: 'sleeve', to: 'vxlan', value: 0.5, target: 0.7, met: false }]);
  });

  test('sleeve kernel drops: summed per host over the sleeve runs', () => {
    const d = (tapTxDropped: number, udpRcvbufErrors: number) => ({ tapTxDropped, udpRcvbufErrors });
    const dropRuns: Run[] = [
      { round: 1, path: 'sleeve', test: 'tcp1', measured: tcp(1e9), drops: { sleeve: [d(10, 0), d(0, 1)] } },
      { round: 1, path: 'sleeve', test: 'udp64', measured: udp(1e5), drops: { receiverUdpRcvbuf: 5, sleeve: [d(100, 0), d(0, 2)] } },
      { round: 1, path: 'vxlan', test: 'udp64', measured: udp(1e5), drops: { receiverUdpRcvbuf: 7 } },
    ];
    expect(sleeveDropTotals(dropRuns)).toEqual([d(110, 0), d(0, 3)]);
  });

  test('sleeve CPU: seconds used over seconds run, per host', () => {
    expect(sleeveCpu(runs)).toEqual([
      { test: 'tcp1', percent: [80, 40] },
      { test: 'udp64', percent: [100, 100] },
    ]);
  });

  test('the table names every path, the target and whether it was met', () => {
    const cells = summarize(runs);
    const sleeve = { cpu: sleeveCpu(runs), peakRssBytes: [3 << 20, 3 << 20] as [number, number], startRssBytes: [1 << 20, 1 << 20] as [number, number], drops: sleeveDropTotals(runs), counters: [{}, {}] as [Record<string, unknown>, Record<string, unknown>] };
    const failures = [{ path: 'veth' as const, test: 'udp64' as const, round: 1, error: 'iperf3: unable to connect to server: No route to host' }];
    const text = formatResults({ seconds: 5, rounds: 3, mtu: { sleeve: 1436, vxlan: 1450, veth: 1500 }, cells, ratios: ratios(runs), sleeve, failures, runs });
    expect(text).toContain('median of 3 rounds');
    expect(text).toMatch(/TCP, 1 stream\s+7\.00 Gbit\/s\s+10\.00 Gbit\/s\s+20\.00 Gbit\/s/);
    expect(text).toMatch(/UDP, 64 B payload, into c2\s+0\.150 Mpps\s+0\.200 Mpps\s+-/);
    expect(text).toMatch(/UDP, 64 B payload, to iperf3\s+0\.100 Mpps, 10\.0% lost\s+0\.100 Mpps, 10\.0% lost\s+-/);
    expect(text).toMatch(/TCP, 1 stream\s+0\.700x\s+>= 0\.7x\s+yes\s+0\.500x\s+0\.350x/);
    expect(text).toMatch(/UDP, 64 B payload\s+0\.750x\s+>= 0\.6x\s+yes/);
    expect(text).toContain('veth FAILED (udp64, round 1): iperf3: unable to connect to server: No route to host');
    expect(text).toMatch(/peak RSS \(VmHWM\)\s+3\.0 MiB\s+3\.0 MiB/);
  });
});
