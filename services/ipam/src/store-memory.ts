import type { Mutation, Versioned, Written } from '@weave/bus';
import type { HostRecord } from './core/hosts';
import type { BlockRecord, LeaseRecord, PoolRecord } from './core/records';
import type { UlaRecord } from './core/ula';
import type { IpamStore, Mirror, Table } from './store';

/**
 * The store in memory, with the same compare-and-set semantics as JetStream KV (one revision
 * counter per bucket). For unit tests that need no nats-server, and for injecting crashes.
 */
export class MemoryTable<T> implements Table<T> {
  private readonly rows = new Map<string, Versioned<T>>();
  private seq = 0;

  constructor(readonly name: string) {}

  async get(key: string) {
    return this.row(key) ?? null;
  }
  getFromLeader(key: string) {
    return this.get(key);
  }
  row(key: string): Versioned<T> | undefined {
    const row = this.rows.get(key);
    return row && { value: structuredClone(row.value), revision: row.revision };
  }
  /** The keys as they are now: a mirror that never lags. Tests list with it too. */
  keys(parent?: string): string[] {
    const all = [...this.rows.keys()];
    if (parent === undefined) return all;
    return all.filter((k) => k.startsWith(`${parent}.`) && !k.slice(parent.length + 1).includes('.'));
  }
  async create(key: string, value: T) {
    if (this.rows.has(key)) return null;
    this.rows.set(key, { value: structuredClone(value), revision: ++this.seq });
    return this.seq;
  }
  async mutate<R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }): Promise<Written<R>> {
    const cur = await this.get(key);
    const { change, result } = decide(cur?.value ?? null);
    if ('keep' in change) return { result, revision: null };
    if ('delete' in change) {
      this.rows.delete(key);
      return { result, revision: null };
    }
    this.rows.set(key, { value: structuredClone(change.put), revision: ++this.seq });
    return { result, revision: this.seq };
  }
  async deleteAt(key: string, revision: number) {
    if (this.rows.get(key)?.revision !== revision) return false;
    this.rows.delete(key);
    return true;
  }
}

/** A table's own rows: memory has no watch to lag behind, so it is always caught up. */
const mirrorOf = <T>(t: MemoryTable<T>): Mirror<T> => ({
  ready: async () => undefined,
  caughtUp: async () => undefined,
  upToDate: async () => undefined,
  keys: (parent) => t.keys(parent),
  get: (key) => t.row(key),
});

export const memoryStore = (): IpamStore => {
  const pools = new MemoryTable<PoolRecord>('pools');
  const blocks = new MemoryTable<BlockRecord>('blocks');
  const leases = new MemoryTable<LeaseRecord>('leases');
  const hosts = new MemoryTable<HostRecord>('hosts');
  return {
    pools,
    blocks,
    leases,
    hosts,
    mesh: new MemoryTable<UlaRecord>('mesh'),
    mirrors: { pools: mirrorOf(pools), blocks: mirrorOf(blocks), leases: mirrorOf(leases), hosts: mirrorOf(hosts) },
    close: async () => undefined,
  };
};
