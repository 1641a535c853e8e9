import { KV, kvGet, kvKeys, kvMutate } from '@weave/bus';
import { DockerId, IpWithPrefix, MacString, Mtu, NetworkSpec } from '@weave/contracts';
import { UnavailableError, WeaveError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';

/**
 * What netwire must remember across restarts: the networks and endpoints Docker created on this
 * host. Docker never replays CreateNetwork, so without these a restart would strand every
 * network; reconcile also uses them to tell our live links from leftovers.
 */
export const NetworkRecord = z.object({ spec: NetworkSpec, bridge: z.string(), mtu: Mtu });
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
 * keys, and per network it does so one operation at a time; writes still go through
 * compare-and-set so a second netwire started by mistake cannot silently overwrite.
 */
export class KvStore implements Store {
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

  private async get<T extends z.ZodType>(key: string, schema: T): Promise<z.output<T> | null> {
    return (await this.kvCall(key, () => kvGet(this.kv, key, schema)))?.value ?? null;
  }

  private async put<T extends z.ZodType>(key: string, schema: T, value: z.output<T>): Promise<void> {
    await this.kvCall(key, () => kvMutate(this.kv, key, schema, () => ({ change: { put: value }, result: undefined })));
  }

  private async del(key: string): Promise<void> {
    // A record that no longer parses must still be deletable, so the schema here accepts anything.
    await this.kvCall(key, () => kvMutate(this.kv, key, z.unknown(), () => ({ change: { delete: true }, result: undefined })));
  }

  /** All records of one kind; one that does not parse is logged and left out, not fatal. */
  private async list<T extends z.ZodType>(kind: 'net' | 'ep', schema: T): Promise<Array<z.output<T>>> {
    const out: Array<z.output<T>> = [];
    for (const key of await this.kvCall(kind, () => kvKeys(this.kv, `${this.host}.${kind}.*`))) {
      try {
        const v = await kvGet(this.kv, key, schema);
        if (v) out.push(v.value);
      } catch (err) {
        this.log.warn({ err, key }, 'ignoring a netwire record that does not parse');
      }
    }
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
