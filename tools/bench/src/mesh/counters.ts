import { readFileSync } from 'node:fs';
import { inNs, run } from './exec';

/**
 * The kernel's counters around each run: where packets were lost (a socket whose receive buffer
 * was full: UDP RcvbufErrors; a TAP whose queue was full: its tx drops, frames the bridge handed
 * over but the sleeve did not read in time), and how many frames reached the receiving container.
 */
export interface SleeveDrops {
  tapTxDropped: number;
  udpRcvbufErrors: number;
}

/** The receiving container: frames its interface received, and datagrams its sockets dropped. */
export interface ReceiverCounters {
  rxPackets: number;
  udpRcvbufErrors: number;
}

/** The `Udp:` counters of /proc/net/snmp (a header line of names, then a line of values). */
export function udpCounters(snmpText: string): Record<string, number> {
  const [names, values] = snmpText.split('\n').filter((l) => l.startsWith('Udp:'));
  if (!names || !values) throw new Error('no Udp lines in /proc/net/snmp');
  const v = values.split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.split(/\s+/).slice(1).map((n, i) => [n, v[i] ?? 0]));
}

/** One device's line of /proc/net/dev: rx packets (2nd counter) and tx drops (12th). */
export function netDevCounters(netDevText: string, dev: string): { rxPackets: number; txDropped: number } {
  const line = netDevText.split('\n').find((l) => l.trim().startsWith(`${dev}:`));
  if (!line) throw new Error(`no ${dev} in /proc/net/dev`);
  const c = line.slice(line.indexOf(':') + 1).trim().split(/\s+/).map(Number);
  return { rxPackets: c[1]!, txDropped: c[11]! };
}

/** Counters of device `dev` in namespace `ns` (one process for both files). */
export async function receiverCounters(ns: string, dev: string): Promise<ReceiverCounters> {
  const text = await run(inNs(ns, ['cat', '/proc/net/snmp', '/proc/net/dev']));
  return { rxPackets: netDevCounters(text, dev).rxPackets, udpRcvbufErrors: udpCounters(text)['RcvbufErrors'] ?? 0 };
}

/** The sleeve's drops so far, read through its process (/proc/<pid>/net is its namespace's). */
export const sleeveDrops = (pid: number, tap: string): SleeveDrops => ({
  tapTxDropped: netDevCounters(readFileSync(`/proc/${pid}/net/dev`, 'utf8'), tap).txDropped,
  udpRcvbufErrors: udpCounters(readFileSync(`/proc/${pid}/net/snmp`, 'utf8'))['RcvbufErrors'] ?? 0,
});
