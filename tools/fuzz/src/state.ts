import { createHash } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { Kvm } from '@nats-io/kv';
import { ipamStateOfRecord, selfChangingBuckets, type ProcessStack } from '@weave/e2e';

/**
 * Everything a malformed request could have changed: each service's own account (status) and
 * every KV bucket, key by key with its revision (a rewrite of the same value still counts).
 */
export type Snapshot = Record<string, unknown>;

export async function snapshot(stack: ProcessStack): Promise<Snapshot> {
  const [ipam, netwire, router, kv] = await Promise.all([stack.ipam.status({}), stack.netwire.status({}), stack.router.status({}), kvContents(stack.nc)]);
  return { ipam: ipamStateOfRecord(ipam), netwire, router, kv };
}

async function kvContents(nc: NatsConnection): Promise<Record<string, Record<string, string>>> {
  const kvm = new Kvm(nc);
  const out: Record<string, Record<string, string>> = {};
  for await (const status of kvm.list()) {
    if (selfChangingBuckets.includes(status.bucket)) continue;
    const kv = await kvm.open(status.bucket);
    const entries: Record<string, string> = {};
    for await (const key of await kv.keys()) {
      const e = await kv.get(key);
      if (e) entries[key] = `${e.operation}@${e.revision}:${createHash('sha256').update(e.value).digest('hex').slice(0, 16)}`;
    }
    out[status.bucket] = entries;
  }
  return out;
}

/** The paths at which two snapshots differ (at most `max`), empty when they are the same. */
export function differences(a: unknown, b: unknown, path = '', max = 10): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object' || Array.isArray(a) !== Array.isArray(b)) {
    return [`${path || '(root)'}: ${short(a)} → ${short(b)}`];
  }
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys.flatMap((k) => differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k, max)).slice(0, max);
}

const short = (v: unknown): string => {
  const s = v === undefined ? 'absent' : JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
};
