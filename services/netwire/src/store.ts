import { KV, kvCreate, kvDelete, kvGet, kvKeys, kvMutate, kvUpdate } from '@weave/bus';
import { DockerId, IpWithPrefix, MacString, Mtu, NetworkSpec, PublishedPort } from '@weave/contracts';
import { EndpointIsolation } from '@weave/contracts';
import { ConflictError, UnavailableError, WeaveError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';

/**
 * What netwire must remember across restarts: the networks and endpoints Docker created on this
 * host. Docker never replays CreateNetwork, so without these a restart would strand every
 * network; reconcile also uses them to tell our live links from leftovers.
 */
export const NetworkRecord = z.object({
  spec: NetworkSpec,
  bridge: z.string(),
  mtu: Mtu,
  /** When netwire made it (see EndpointRecord.createdAt); absent in records written before it existed. */
  createdAt: z.iso.datetime().optional(),
});
export type NetworkRecord = z.output<typeof NetworkRecord>;

export const EndpointRecord = z.object({
  networkId: DockerId,
  endpointId: DockerId,
  address: IpWithPrefix.nullable(),
  addressV6: IpWithPrefix.nullable(),
  mac: MacString,
  /** True when we chose the MAC (Docker gave none): only then is it part of our reply. */
  macGenerated: z.boolean(),
  hostVeth: z.string(),
  containerVeth: z.string(),
  /**
   * When netwire made it: reconciliation against Docker spares young endpoints, which Docker may
   * not have recorded yet. Absent in records written before it existed.
   */
  createdAt: z.iso.datetime().optional(),
  /** Its published ports (ProgramExternalConnectivity); reconcile puts their rules back after a restart. */
  ports: z.array(PublishedPort).optional(),
  /** Set once it was taken off its network (its address is another host's): it is never put back on it. */
  isolated: EndpointIsolation.nullable().optional(),
});
export type EndpointRecord = z.output<typeof EndpointRecord>;

export interface Store {
  getNetwork(networkId: string): Promise<NetworkRecord | null>;
  putNetwork(r: NetworkRecord): Promise<void>;
  deleteNetwork(networkId: string): Promise<void>;
  listNetworks(): Promise<NetworkRecord[]>;
  getEndpoint(endpointId: string): Promise<EndpointRecord | null>;
  putEndpoint(r: EndpointRecord): Promise<void>;
  deleteEndpoint(endpointId: string): Promise<void>;
  listEndpoints(): Promise<EndpointRecord[]>;
}

/**
 * The store in the `weave-netwire` JetStream KV bucket, one key per record:
 * `<host>.net.<networkId>` and `<host>.ep.<endpointId>`. Only this host's netwire writes its
 * keys, so once a kind has been listed (reconcile does at start) this process's copy is complete
 * and reads need no round trip: endpoint calls sit on the path of every container start. Writes
 * still go through compare-and-set on the revision we hold, so a second netwire started by
 * mistake cannot silently overwrite; on a conflict the copy is refreshed from KV.
 */
export class KvStore implements Store {
  private readonly cache = new Map<string, { value: unknown; revision: number }>();
  private readonly complete = new Set<'net' | 'ep'>();

  constructor(
    private readonly kv: KV,
    private readonly host: string,
    private readonly log: Logger,
  ) {}

  getNetwork = (id: string) => this.get(this.netKey(id), NetworkRecord);
  putNetwork = (r: NetworkRecord) => this.put(this.netKey(r.spec.networkId), NetworkRecord, r);
  deleteNetwork = (id: string) => this.del(this.netKey(id));
  listNetworks = () => this.list('net', NetworkRecord);
  getEndpoint = (id: string) => this.get(this.epKey(id), EndpointRecord);
  putEndpoint = (r: EndpointRecord) => this.put(this.epKey(r.endpointId), EndpointRecord, r);
  deleteEndpoint = (id: string) => this.del(this.epKey(id));
  listEndpoints = () => this.list('ep', EndpointRecord);

  private netKey = (id: string): string => `${this.host}.net.${id}`;
  private epKey = (id: string): string => `${this.host}.ep.${id}`;

  private kindOf = (key: string): 'net' | 'ep' => (key.startsWith(`${this.host}.net.`) ? 'net' : 'ep');

  private async get<T extends z.ZodType>(key: string, schema: T): Promise<z.output<T> | null> {
    const hit = this.cache.get(key);
    if (hit) return hit.value as z.output<T>;
    if (this.complete.has(this.kindOf(key))) return null;
    const v = await this.kvCall(key, () => kvGet(this.kv, key, schema));
    if (v) this.cache.set(key, v);
    return v?.value ?? null;
  }

  private async put<T extends z.ZodType>(key: string, schema: T, value: z.output<T>): Promise<void> {
    const held = this.cache.get(key);
    const revision = await this.kvCall(key, async () => {
      try {
        return held ? await kvUpdate(this.kv, key, value, held.revision) : await kvCreate(this.kv, key, value);
      } catch (e) {
        if (!(e instanceof ConflictError)) throw e;
        this.log.warn({ key }, 'netwire record changed by someone else; rewriting it from a fresh read');
        await kvMutate(this.kv, key, schema, () => ({ change: { put: value }, result: undefined }));
        return (await kvGet(this.kv, key, schema))!.revision;
      }
    });
    this.cache.set(key, { value, revision });
  }

  private async del(key: string): Promise<void> {
    const held = this.cache.get(key);
    this.cache.delete(key);
    // A record that no longer parses must still be deletable, so the schema here accepts anything.
    await this.kvCall(key, async () => {
      try {
        await kvDelete(this.kv, key, held?.revision);
      } catch (e) {
        if (!(e instanceof ConflictError)) throw e;
        await kvMutate(this.kv, key, z.unknown(), () => ({ change: { delete: true }, result: undefined }));
      }
    });
  }

  /** All records of one kind; one that does not parse is logged and left out, not fatal. */
  private async list<T extends z.ZodType>(kind: 'net' | 'ep', schema: T): Promise<Array<z.output<T>>> {
    const out: Array<z.output<T>> = [];
    for (const key of await this.kvCall(kind, () => kvKeys(this.kv, `${this.host}.${kind}.*`))) {
      try {
        const v = await kvGet(this.kv, key, schema);
        if (v) {
          out.push(v.value);
          this.cache.set(key, v);
        }
      } catch (err) {
        this.log.warn({ err, key }, 'ignoring a netwire record that does not parse');
      }
    }
    this.complete.add(kind);
    return out;
  }

  private async kvCall<R>(what: string, f: () => Promise<R>): Promise<R> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof WeaveError) throw e;
      throw new UnavailableError(`netwire state in JetStream KV (${what}) is not reachable`, { cause: e });
    }
  }
}

/** The store in memory, for tests; `failOn` makes the next write of that kind fail. */
export class MemoryStore implements Store {
  readonly networks = new Map<string, NetworkRecord>();
  readonly endpoints = new Map<string, EndpointRecord>();
  private failing = new Set<string>();

  failOn(op: 'putNetwork' | 'putEndpoint' | 'deleteNetwork' | 'deleteEndpoint'): void {
    this.failing.add(op);
  }

  async getNetwork(id: string) {
    return clone(this.networks.get(id) ?? null);
  }
  async putNetwork(r: NetworkRecord) {
    this.check('putNetwork');
    this.networks.set(r.spec.networkId, clone(r));
  }
  async deleteNetwork(id: string) {
    this.check('deleteNetwork');
    this.networks.delete(id);
  }
  async listNetworks() {
    return [...this.networks.values()].map(clone);
  }
  async getEndpoint(id: string) {
    return clone(this.endpoints.get(id) ?? null);
  }
  async putEndpoint(r: EndpointRecord) {
    this.check('putEndpoint');
    this.endpoints.set(r.endpointId, clone(r));
  }
  async deleteEndpoint(id: string) {
    this.check('deleteEndpoint');
    this.endpoints.delete(id);
  }
  async listEndpoints() {
    return [...this.endpoints.values()].map(clone);
  }

  private check(op: string): void {
    if (this.failing.delete(op)) throw new UnavailableError(`injected store failure in ${op}`);
  }
}

const clone = <T>(v: T): T => structuredClone(v);
