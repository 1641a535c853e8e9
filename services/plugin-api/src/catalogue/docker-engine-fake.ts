import { DockerApiError, DockerEngine } from './docker-engine';
import type { ActiveEntry, LocalNetwork } from './plan';

/** An in-memory Docker engine: networks, their container counts, and the events Docker emits. */
export class FakeDockerEngine implements DockerEngine {
  readonly nets = new Map<string, LocalNetwork>();
  private readonly watchers = new Set<(e: { action: string; name: string }) => void>();

  async networks(): Promise<LocalNetwork[]> {
    return [...this.nets.values()].map((n) => ({ ...n }));
  }

  async createNetwork(_driver: string, e: ActiveEntry): Promise<void> {
    this.userCreates({ name: e.name, subnets: e.subnets, internal: e.internal, ipv6: e.ipv6, options: e.options, labels: e.labels, replicaOf: e.createdAt });
  }

  async removeNetwork(name: string): Promise<void> {
    const n = this.nets.get(name);
    if (!n) throw new DockerApiError('DELETE', `/networks/${name}`, 404, 'network not found');
    if (n.containers > 0) throw new DockerApiError('DELETE', `/networks/${name}`, 403, `network ${name} has active endpoints`);
    this.userRemoves(name);
  }

  watchNetworks(_driver: string, onChange: (e: { action: string; name: string }) => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }

  /** What `docker network create` on this host does. */
  userCreates(n: Omit<LocalNetwork, 'created' | 'containers' | 'replicaOf'> & Partial<LocalNetwork>): void {
    if (this.nets.has(n.name)) throw new DockerApiError('POST', '/networks/create', 409, `network with name ${n.name} already exists`);
    this.nets.set(n.name, { created: new Date().toISOString(), containers: 0, replicaOf: null, ...n });
    for (const w of this.watchers) w({ action: 'create', name: n.name });
  }

  /** What `docker network rm` on this host does. */
  userRemoves(name: string): void {
    this.nets.delete(name);
    for (const w of this.watchers) w({ action: 'destroy', name });
  }
}
