import { KV, kvMutate } from '@weave/bus';
import { Readdress } from '@weave/contracts';
import type { Logger } from '@weave/log';
import { LazyBucket } from '../lazy-bucket';

/** The moves plugin-api has under way or left open (see Readdress), kept across its restarts. */
export interface ReaddressStore {
  list(): Promise<Readdress[]>;
  put(r: Readdress): Promise<void>;
  delete(r: Readdress): Promise<void>;
}

const keyOf = (host: string, r: Pick<Readdress, 'networkId' | 'containerId'>): string => `${host}.${r.networkId}.${r.containerId}`;

/**
 * In the `weave-readdress` KV bucket, one key per container and network, `<host>.<network id>.<container id>`,
 * written by this host's plugin-api only. Read from a watch of the bucket (a listing per pass
 * would create a JetStream consumer each time). The bucket is opened on first use: the plugin's
 * socket must not wait for it.
 */
export class KvReaddressStore implements ReaddressStore {
  private readonly bucket: LazyBucket<Readdress>;

  constructor(
    open: () => Promise<KV>,
    private readonly host: string,
    log: Logger,
  ) {
    // The whole bucket (a few keys per host at most): only such a mirror can tell it has every write.
    this.bucket = new LazyBucket(open, Readdress, { log });
  }

  async list(): Promise<Readdress[]> {
    const { mirror } = await this.bucket.get();
    await mirror.upToDate();
    return mirror.entries().flatMap(([k, v]) => (k.startsWith(`${this.host}.`) ? [v.value] : []));
  }

  async put(r: Readdress): Promise<void> {
    const { kv } = await this.bucket.get();
    await kvMutate(kv, keyOf(this.host, r), Readdress, () => ({ change: { put: r }, result: undefined }));
  }

  async delete(r: Readdress): Promise<void> {
    const { kv } = await this.bucket.get();
    await kvMutate(kv, keyOf(this.host, r), Readdress, (cur) => ({ change: cur ? { delete: true } : { keep: true }, result: undefined }));
  }

  stop(): Promise<void> {
    return this.bucket.stop();
  }
}

/** In memory, for tests. */
export class MemoryReaddressStore implements ReaddressStore {
  readonly rows = new Map<string, Readdress>();
  async list() {
    return [...this.rows.values()].map((r) => structuredClone(r));
  }
  async put(r: Readdress) {
    this.rows.set(keyOf('h', r), structuredClone(r));
  }
  async delete(r: Readdress) {
    this.rows.delete(keyOf('h', r));
  }
}
