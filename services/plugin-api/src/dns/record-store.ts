import { encodeJson, KV, kvDelete, type Versioned } from '@weave/bus';
import { ConflictError } from '@weave/errors';
import { DnsRecord, dnsHostPrefix } from '@weave/contracts';
import type { Logger } from '@weave/log';
import { LazyBucket } from '../lazy-bucket';

/** The DNS bucket as the publisher sees it: its only way to the records. */
export interface DnsRecordStore {
  /** This host's records as the bucket has them, by key. */
  list(): Promise<Map<string, DnsRecord>>;
  /** Every host's records, with their revisions. */
  all(): Promise<Map<string, Versioned<DnsRecord>>>;
  put(key: string, record: DnsRecord): Promise<void>;
  delete(key: string): Promise<void>;
  /** Deletes `key` only if it is still at `revision`; false when it was rewritten or is gone. */
  deleteAt(key: string, revision: number): Promise<boolean>;
}

/**
 * The `weave-dns` KV bucket. This host's plugin-api writes its own keys (`<host>.<endpoint id>`)
 * and deletes, by revision, those of hosts ipam reclaimed. Read from one watch of the whole bucket
 * (a listing per pass would create a JetStream consumer each time; every host's netwire holds the
 * same records); every write waits until the watch has it, so the next pass never plans again
 * what this one did.
 */
export class KvDnsRecords implements DnsRecordStore {
  private readonly bucket: LazyBucket<DnsRecord>;
  private readonly prefix: string;

  constructor(open: () => Promise<KV>, host: string, log: Logger) {
    this.bucket = new LazyBucket(open, DnsRecord, { log });
    this.prefix = dnsHostPrefix(host);
  }

  async list(): Promise<Map<string, DnsRecord>> {
    const all = await this.all();
    return new Map([...all].filter(([k]) => k.startsWith(this.prefix)).map(([k, v]) => [k, v.value]));
  }

  async all(): Promise<Map<string, Versioned<DnsRecord>>> {
    const { mirror } = await this.bucket.get();
    await mirror.ready();
    return new Map(mirror.entries());
  }

  async put(key: string, record: DnsRecord): Promise<void> {
    const { kv, mirror } = await this.bucket.get();
    await mirror.caughtUp(await kv.put(key, encodeJson(record)));
  }

  async delete(key: string): Promise<void> {
    const { kv, mirror } = await this.bucket.get();
    await kv.delete(key);
    await this.markerSeen(kv, mirror, key);
  }

  async deleteAt(key: string, revision: number): Promise<boolean> {
    const { kv, mirror } = await this.bucket.get();
    try {
      await kvDelete(kv, key, revision);
    } catch (e) {
      if (e instanceof ConflictError) return false;
      throw e;
    }
    await this.markerSeen(kv, mirror, key);
    return true;
  }

  /** KV does not say a deletion's revision; its marker, read back, does. */
  private async markerSeen(kv: KV, mirror: { caughtUp(revision: number): Promise<void> }, key: string): Promise<void> {
    const marker = await kv.get(key);
    if (marker) await mirror.caughtUp(marker.revision);
  }

  stop(): Promise<void> {
    return this.bucket.stop();
  }
}

/** In memory, for tests: `rows` may hold other hosts' keys too, as the bucket does. */
export class MemoryDnsRecords implements DnsRecordStore {
  readonly rows = new Map<string, DnsRecord>();
  /** Each row's revision, as KV numbers writes; a row set directly is at 0. */
  readonly revisions = new Map<string, number>();
  private revision = 0;
  /** Makes the next calls fail, as a JetStream without quorum would. */
  failing: Error | null = null;

  async list(): Promise<Map<string, DnsRecord>> {
    this.check();
    return new Map([...this.rows].map(([k, v]) => [k, structuredClone(v)]));
  }

  async all(): Promise<Map<string, Versioned<DnsRecord>>> {
    this.check();
    return new Map([...this.rows].map(([k, v]) => [k, { value: structuredClone(v), revision: this.revisions.get(k) ?? 0 }]));
  }

  async put(key: string, record: DnsRecord): Promise<void> {
    this.check();
    this.rows.set(key, structuredClone(record));
    this.revisions.set(key, ++this.revision);
  }

  async delete(key: string): Promise<void> {
    this.check();
    this.rows.delete(key);
    this.revisions.delete(key);
  }

  async deleteAt(key: string, revision: number): Promise<boolean> {
    this.check();
    if (!this.rows.has(key) || (this.revisions.get(key) ?? 0) !== revision) return false;
    await this.delete(key);
    return true;
  }

  private check(): void {
    if (this.failing) throw this.failing;
  }
}
