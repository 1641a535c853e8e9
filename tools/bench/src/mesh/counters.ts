import { readFileSync } from 'node:fs';
import { inNs, run } from './exec';

/**
 * Where packets were lost, from the kernel's counters: a socket whose receive buffer was full
 * (UDP RcvbufErrors: the receiving iperf3, or a sleeve too slow to read the underlay), and a TAP
 * whose queue was full (its tx drops: frames the bridge handed over but the sleeve did not read).
 */
export interface SleeveDrops {
  tapTxDropped: number;
  udpRcvbufErrors: number;
}

/** The `Udp:` counters of /proc/net/snmp (a header line of names, then a line of values). */
export function udpCounters(snmpText: string): Record<string, number> {
  const [names, values] = snmpText.split('\n').filter((l) => l.startsWith('Udp:'));
  if (!names || !values) throw new Error('no Udp lines in /proc/net/snmp');
  const v = values.split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.split(/\s+/).slice(1).map((n, i) => [n, v[i] ?? 0]));
}

/** Transmit drops of `dev` in /proc/net/dev (the 12th counter after the name: tx drop). */
export function txDropped(netDevText: string, dev: string): number {
  const line = netDevText.split('\n').find((l) => l.trim().startsWith(`${dev}:`));
  if (!line) throw new Error(`no ${dev} in /proc/net/dev`);
  return Number(line.slice(line.indexOf(':') + 1).trim().split(/\s+/)[11]);
}

/** UDP receive-buffer drops in namespace `ns` so far. */
export const udpRcvbufErrors = async (ns: string): Promise<number> => udpCounters(await run(inNs(ns, ['cat', '/proc/net/snmp'])))['RcvbufErrors'] ?? 0;

/** The sleeve's drops so far, read through its process (/proc/<pid>/net is its namespace's). */
export const sleeveDrops = (pid: number, tap: string): SleeveDrops => ({
  tapTxDropped: txDropped(readFileSync(`/proc/${pid}/net/dev`, 'utf8'), tap),
  udpRcvbufErrors: udpCounters(readFileSync(`/proc/${pid}/net/snmp`, 'utf8'))['RcvbufErrors'] ?? 0,
});
