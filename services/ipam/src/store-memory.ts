import type { Mutation, Versioned } from '@weave/bus';
import type { IpamStore, Table } from './store';

/**
 * The store in memory, with the same compare-and-set semantics as JetStream KV (one revision
 * counter per bucket). For unit tests that need no nats-server, and for injecting crashes.
 */
export class MemoryTable<T> implements Table<T> {
  private readonly rows = new Map<string, Versioned<T>>();
  private seq = 0;

  constructor(readonly name: string) {}

  async get(key: string) {
    const row = this.rows.get(key);
    return row ? { value: structuredClone(row.value), revision: row.revision } : null;
  }
  async keys(parent?: string) {
    const all = [...this.rows.keys()];
    if (parent === undefined) return all;
    return all.filter((k) => k.startsWith(`${parent}.`) && !k.slice(parent.length + 1).includes('.'));
  }
  async create(key: string, value: T) {
    if (this.rows.has(key)) return false;
    this.rows.set(key, { value: structuredClone(value), revision: ++this.seq });
    return true;
  }
  async mutate<R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }) {
    const cur = await this.get(key);
    const { change, result } = decide(cur?.value ?? null);
    if ('delete' in change) this.rows.delete(key);
    else if ('put' in change) this.rows.set(key, { value: structuredClone(change.put), revision: ++this.seq });
    return result;
  }
  async deleteAt(key: string, revision: number) {
    if (this.rows.get(key)?.revision !== revision) return false;
    this.rows.delete(key);
    return true;
  }
}

export const memoryStore = (): IpamStore => ({
  pools: new MemoryTable('pools'),
  blocks: new MemoryTable('blocks'),
  leases: new MemoryTable('leases'),
});
