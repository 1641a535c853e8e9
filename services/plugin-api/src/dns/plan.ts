import { DnsName, DnsRecord, dnsHostPrefix, dnsKey, IpString } from '@weave/contracts';
import { z } from 'zod';
import type { DnsAttachment } from './docker-attachments';

export interface DnsPut {
  key: string;
  record: DnsRecord;
  /** The record the key holds now; null for a new one. */
  previous: DnsRecord | null;
}

export interface DnsDelete {
  key: string;
  record: DnsRecord;
}

/** A name (or a whole endpoint, without `name`) left out, and why. */
export interface DnsSkip {
  containerId: string;
  network: string;
  name?: string;
  reason: string;
}

export interface DnsPlan {
  put: DnsPut[];
  delete: DnsDelete[];
  skipped: DnsSkip[];
}

const MAX_NAMES = 64;

/** Whose records, written under which of its ipam epochs (see DnsRecord.epoch). */
export interface DnsWriter {
  host: string;
  epoch: number;
}

/**
 * What this host's keys of the DNS bucket must become for Docker's view: a record per endpoint
 * of a running container on our networks, under its container name and aliases. `current` may
 * hold other hosts' keys; only this host's are ever put or deleted. A record of an older epoch
 * is written again, so that no cleanup of that epoch's reclaim takes it.
 */
export function planDns(by: DnsWriter, attachments: readonly DnsAttachment[], current: ReadonlyMap<string, DnsRecord>): DnsPlan {
  const { host } = by;
  const plan: DnsPlan = { put: [], delete: [], skipped: [] };
  const wanted = new Map<string, DnsRecord>();
  for (const a of attachments) {
    const record = recordOf(by, a, plan.skipped);
    if (record) wanted.set(dnsKey(host, record.endpointId), record);
  }
  for (const [key, record] of wanted) {
    const previous = current.get(key) ?? null;
    if (!previous || !sameRecord(previous, record)) plan.put.push({ key, record, previous });
  }
  const ours = dnsHostPrefix(host);
  for (const [key, record] of current) {
    if (key.startsWith(ours) && !wanted.has(key)) plan.delete.push({ key, record });
  }
  return plan;
}

/** The attachment's record, or null (with the reason in `skipped`) when nothing of it is publishable. */
function recordOf({ host, epoch }: DnsWriter, a: DnsAttachment, skipped: DnsSkip[]): DnsRecord | null {
  const at = { containerId: a.containerId, network: a.network };
  const names = validNames([a.containerName, ...a.aliases], (name, reason) => skipped.push({ ...at, name, reason }));
  const addresses = a.addresses.filter((ip) => IpString.safeParse(ip).success);
  if (names.length === 0) return (skipped.push({ ...at, reason: 'no valid DNS name' }), null);
  if (addresses.length === 0) return (skipped.push({ ...at, reason: 'no IP address' }), null);
  const parsed = DnsRecord.safeParse({ host, containerId: a.containerId, endpointId: a.endpointId, network: a.network, names, addresses, epoch });
  if (!parsed.success) return (skipped.push({ ...at, reason: z.prettifyError(parsed.error) }), null);
  return parsed.data;
}

/** The names that are DNS names, lowercased, each once, at most MAX_NAMES. */
function validNames(raw: readonly string[], skip: (name: string, reason: string) => void): string[] {
  const out: string[] = [];
  for (const name of raw) {
    const parsed = DnsName.safeParse(name);
    if (!parsed.success) skip(name, parsed.error.issues[0]?.message ?? 'not a DNS name');
    else if (out.includes(parsed.data)) continue;
    else if (out.length >= MAX_NAMES) skip(name, `more than ${MAX_NAMES} names`);
    else out.push(parsed.data);
  }
  return out;
}

function sameRecord(a: DnsRecord, b: DnsRecord): boolean {
  return (
    a.host === b.host &&
    a.containerId === b.containerId &&
    a.endpointId === b.endpointId &&
    a.network === b.network &&
    a.epoch === b.epoch &&
    sameList(a.names, b.names) &&
    sameList(a.addresses, b.addresses)
  );
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
