import { encodeJson, KV } from '@weave/bus';
import { DnsRecord, dnsHostPrefix } from '@weave/contracts';
import type { Logger } from '@weave/log';
import { LazyBucket } from '../lazy-bucket';

/** This host's keys of the DNS bucket: the publisher's only way to them. */
export interface DnsRecordStore {
  /** This host's records as the bucket has them, by key. */
  list(): Promise<Map<string, DnsRecord>>;
  put(key: string, record: DnsRecord): Promise<void>;
  delete(key: string): Promise<void>;
}

/**
 * The `weave-dns` KV bucket, of which this host's plugin-api is the only writer of its keys
 * (`<host>.<endpoint id>`). Read from a watch of those keys alone (a listing per pass would create
 * a JetStream consumer each time); every write waits until the watch has it, so the next pass
 * never plans again what this one did.
 */
export class KvDnsRecords implements DnsRecordStore {
  private readonly bucket: LazyBucket<DnsRecord>;

  constructor(open: () => Promise<KV>, host: string, log: Logger) {
    this.bucket = new LazyBucket(open, DnsRecord, { log, filter: `${dnsHostPrefix(host)}>` });
  }

  async list(): Promise<Map<string, DnsRecord>> {
    const { mirror } = await this.bucket.get();
    await mirror.ready();
    return new Map(mirror.entries().map(([k, v]) => [k, v.value]));
  }

  async put(key: string, record: DnsRecord): Promise<void> {
    const { kv, mirror } = await this.bucket.get();
    await mirror.caughtUp(await kv.put(key, encodeJson(record)));
  }

  async delete(key: string): Promise<void> {
    const { kv, mirror } = await this.bucket.get();
    await kv.delete(key);
    // KV does not say a deletion's revision; its marker, read back, does.
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
  /** Makes the next calls fail, as a JetStream without quorum would. */
  failing: Error | null = null;

  async list(): Promise<Map<string, DnsRecord>> {
    this.check();
    return new Map([...this.rows].map(([k, v]) => [k, structuredClone(v)]));
  }

  async put(key: string, record: DnsRecord): Promise<void> {
    this.check();
    this.rows.set(key, structuredClone(record));
  }

  async delete(key: string): Promise<void> {
    this.check();
    this.rows.delete(key);
  }

  private check(): void {
    if (this.failing) throw this.failing;
  }
}
