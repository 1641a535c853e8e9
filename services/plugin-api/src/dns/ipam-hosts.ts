import type { KV, KvMirror } from '@weave/bus';
import { HostRecord } from '@weave/contracts';
import type { Logger } from '@weave/log';
import { LazyBucket } from '../lazy-bucket';

/** ipam's record of every host (live at an epoch, or reclaimed), read only: ipam owns the bucket. */
export interface IpamHosts {
  /** Every host's record, by host name. */
  list(): Promise<Map<string, HostRecord>>;
  /** Calls `fn` after a change, with the records then; returns what ends that. */
  onChange(fn: (hosts: Map<string, HostRecord>) => void): () => void;
}

/**
 * Ipam's hosts bucket, from a watch (renewals make it change every few seconds, a listing per
 * pass would create a consumer each time). Records that fail the schema are left out, so a host
 * whose record this version cannot read is never taken for reclaimed.
 */
export class KvIpamHosts implements IpamHosts {
  private readonly bucket: LazyBucket<HostRecord>;
  private readonly listeners = new Set<(hosts: Map<string, HostRecord>) => void>();
  private followed: KvMirror<HostRecord> | null = null;

  constructor(open: () => Promise<KV>, log: Logger) {
    this.bucket = new LazyBucket(open, HostRecord, { log });
  }

  async list(): Promise<Map<string, HostRecord>> {
    const mirror = await this.mirror();
    await mirror.ready();
    return recordsOf(mirror);
  }

  onChange(fn: (hosts: Map<string, HostRecord>) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  stop(): Promise<void> {
    return this.bucket.stop();
  }

  /** The mirror, told to call the listeners from its first opening on (the first list). */
  private async mirror(): Promise<KvMirror<HostRecord>> {
    const { mirror } = await this.bucket.get();
    if (this.followed !== mirror) {
      this.followed = mirror;
      mirror.onChange(() => {
        const hosts = recordsOf(mirror);
        for (const fn of this.listeners) fn(hosts);
      });
    }
    return mirror;
  }
}

const recordsOf = (mirror: KvMirror<HostRecord>): Map<string, HostRecord> => new Map(mirror.entries().map(([k, v]) => [k, v.value]));

/** In memory, for tests: set `rows`, then `changed()` as a watch would. */
export class MemoryIpamHosts implements IpamHosts {
  readonly rows = new Map<string, HostRecord>();
  private readonly listeners = new Set<(hosts: Map<string, HostRecord>) => void>();

  /** `host` live at `epoch`, as its ipam registers it. */
  static live(host: string, epoch = 1): MemoryIpamHosts {
    const m = new MemoryIpamHosts();
    m.rows.set(host, { state: 'live', epoch, renewedAt: new Date().toISOString() });
    return m;
  }

  async list(): Promise<Map<string, HostRecord>> {
    return new Map(this.rows);
  }

  onChange(fn: (hosts: Map<string, HostRecord>) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed(): void {
    for (const fn of this.listeners) fn(new Map(this.rows));
  }
}
