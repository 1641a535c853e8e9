import type { Mutation } from '@weave/bus';
import { countBy, type Family, type Registry } from '@weave/metrics';
import { cidrOfPoolKey } from './core/keys';
import type { IpamStore, Table } from './store';

type TableName = 'pools' | 'blocks' | 'leases' | 'hosts' | 'mesh';
type Op = 'create' | 'mutate' | 'delete';

/**
 * The store, with the compare-and-set conflicts this process meets counted by table and
 * operation (a block claim that lost to another host is `{table="blocks",op="create"}`), and
 * ipam's state read from the mirrors at each scrape: mesh-wide, so every host's ipam shows the
 * same totals, by owner.
 */
export function instrumentStore(store: IpamStore, registry: Registry): IpamStore {
  const conflicts = registry.counter({
    name: 'weave_ipam_kv_conflicts_total',
    help: 'Compare-and-set writes to IPAM state in KV that found the key taken or changed by someone else, by table and operation',
    labels: ['table', 'op'],
  });
  const counted = <T>(table: TableName, t: Table<T>): Table<T> => conflictsCounted(t, (op) => conflicts.inc({ table, op }));
  registry.collect(() => stateFamilies(store.mirrors));
  return { ...store, pools: counted('pools', store.pools), blocks: counted('blocks', store.blocks), leases: counted('leases', store.leases), hosts: counted('hosts', store.hosts), mesh: counted('mesh', store.mesh) };
}

/** A create that finds its key, a delete at a stale revision, a mutation decided again on a fresh read: each is a conflict. */
function conflictsCounted<T>(t: Table<T>, conflict: (op: Op) => void): Table<T> {
  return {
    name: t.name,
    get: (key) => t.get(key),
    ...(t.getFromLeader ? { getFromLeader: (key: string) => t.getFromLeader!(key) } : {}),
    create: async (key, value) => {
      const revision = await t.create(key, value);
      if (revision === null) conflict('create');
      return revision;
    },
    mutate: <R>(key: string, decide: (cur: T | null) => { change: Mutation<T>; result: R }) => {
      let decided = 0;
      return t.mutate(key, (cur) => {
        if (decided++ > 0) conflict('mutate');
        return decide(cur);
      });
    },
    deleteAt: async (key, revision) => {
      const deleted = await t.deleteAt(key, revision);
      if (!deleted) conflict('delete');
      return deleted;
    },
  };
}

async function stateFamilies(m: IpamStore['mirrors']): Promise<Family[]> {
  // Before the first snapshot the mirrors are empty, which would read as "no state": wait for it.
  await Promise.all([m.pools.ready(), m.blocks.ready(), m.leases.ready(), m.hosts.ready()]);
  const values = <T>(mirror: { keys(): string[]; get(k: string): { value: T } | undefined }) => mirror.keys().flatMap((k) => mirror.get(k)?.value ?? []);
  const hosts = m.hosts.keys().flatMap((host) => {
    const r = m.hosts.get(host)?.value;
    return r ? [{ host, ...r }] : [];
  });
  return [
    { name: 'weave_ipam_pools', help: 'Pools (subnets) in the mesh', type: 'gauge', samples: [{ labels: {}, value: m.pools.keys().filter((k) => cidrOfPoolKey(k) !== null).length }] },
    { name: 'weave_ipam_blocks', help: 'Address blocks claimed, by the host that owns them', type: 'gauge', samples: countBy(values(m.blocks), (b) => ({ owner: b.owner })) },
    { name: 'weave_ipam_leases', help: 'Addresses leased, by host and kind (endpoint, gateway, aux)', type: 'gauge', samples: countBy(values(m.leases), (l) => ({ host: l.host, kind: l.kind })) },
    { name: 'weave_ipam_host_epoch', help: "Each ipam host's epoch (a reclaim bumps it), labelled with its state (live, reclaimed)", type: 'gauge', samples: hosts.map((h) => ({ labels: { host: h.host, state: h.state }, value: h.epoch })) },
    {
      name: 'weave_ipam_host_renewed_timestamp_seconds',
      help: 'When each ipam host last renewed its lease (Unix time); a host unrenewed for WEAVE_IPAM_HOST_LEASE_MS is reclaimed',
      type: 'gauge',
      samples: hosts.map((h) => ({ labels: { host: h.host }, value: Date.parse(h.renewedAt) / 1000 })),
    },
  ];
}
