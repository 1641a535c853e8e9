import type { RpcClient } from '@weave/bus';
import type { EventDataOf, ipamRpc, netwireRpc, Readdress, ReaddressReport } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { z } from 'zod';
import type { DockerContainers } from './docker-containers';
import type { DockerNetworkView } from './plan';
import { Displaced, findDisplaced, isolateRequest, leaseQuery, nextStep, readdressOf, reasonOf } from './readdress-plan';
import type { ReaddressStore } from './readdress-store';
import type { ReconcilerOptions } from './reconciler';

export type ReaddressPass = z.output<typeof ReaddressReport> & { problems: string[] };

export interface ReaddresserEvents {
  publish(kind: 'container.readdressed', data: EventDataOf<'plugin-api', 'container.readdressed'>): void;
}

/** As the reconciler's, with what a move needs instead of what a sweep does. */
export interface ReaddresserOptions extends Pick<ReconcilerOptions, 'driver' | 'log' | 'now'> {
  docker: DockerContainers;
  ipam: Pick<RpcClient<typeof ipamRpc>, 'checkLeases'>;
  netwire: Pick<RpcClient<typeof netwireRpc>, 'isolateEndpoints'>;
  store: ReaddressStore;
  events: ReaddresserEvents;
}

/**
 * Moves this host's containers off addresses other hosts hold (see readdress-plan.ts), as a step
 * of each reconciliation pass with Docker's listing of that pass: asks ipam which endpoint
 * addresses this host still holds, has netwire take the others' endpoints off their network at
 * once, records each move, then disconnects the container (Force) and connects it again, and
 * forgets the record. A record is written before the disconnect, so a crash anywhere is finished
 * by the next pass; a container whose own --ip was taken stays disconnected, its record kept for
 * `weave status` until the container is removed or connected again.
 */
export class Readdresser {
  private readonly now: () => Date;

  constructor(private readonly o: ReaddresserOptions) {
    this.now = o.now ?? (() => new Date());
  }

  async pass(networks: readonly DockerNetworkView[]): Promise<ReaddressPass> {
    const r: ReaddressPass = { displaced: 0, isolated: 0, reconnected: 0, disconnected: 0, pending: 0, problems: [] };
    const displaced = await this.find(networks, r);
    r.displaced = displaced.length;
    await this.isolate(displaced, r);
    const open = await this.attempt(r, 'read the moves under way', () => this.o.store.list());
    const records = new Map((open ?? []).map((x) => [key(x), x]));
    for (const d of displaced) {
      if (d.containerId === null || records.has(`${d.networkId} ${d.containerId}`)) continue;
      const rec = await this.attempt(r, `record the move of ${d.container || d.containerId}`, () => this.record(d));
      if (rec) records.set(key(rec), rec);
    }
    for (const rec of records.values()) {
      const state = await this.attempt(r, `move ${rec.container} off ${rec.address} on ${rec.network}`, () => this.drive(rec, r));
      if (state !== 'closed') r.pending++;
    }
    return r;
  }

  /** Every open record: containers being moved, and those left disconnected. */
  status(): Promise<Readdress[]> {
    return this.o.store.list();
  }

  private async find(networks: readonly DockerNetworkView[], r: ReaddressPass): Promise<Displaced[]> {
    const query = leaseQuery(this.o.driver, networks);
    if (query.pools.length === 0) return [];
    const held = await this.attempt(r, 'ask ipam which addresses this host holds', () => this.o.ipam.checkLeases(query));
    return held ? findDisplaced(this.o.driver, networks, held.addresses) : [];
  }

  /** At once, before anything else: until Docker disconnects them, these containers share an address with another host's. */
  private async isolate(displaced: readonly Displaced[], r: ReaddressPass): Promise<void> {
    const req = isolateRequest(displaced);
    if (req.endpoints.length === 0) return;
    const done = await this.attempt(r, 'take endpoints off their network', () => this.o.netwire.isolateEndpoints(req));
    r.isolated = done?.isolated.length ?? 0;
  }

  private async record(d: Displaced): Promise<Readdress | null> {
    const c = await this.o.docker.container(d.containerId!);
    const rec = c && readdressOf(d, c, this.now());
    if (rec) await this.o.store.put(rec);
    return rec;
  }

  /** Takes one move as far as it goes now; each step is decided afresh from Docker's view (see nextStep). */
  private async drive(rec: Readdress, r: ReaddressPass): Promise<'closed' | 'open'> {
    let step = nextStep(rec, await this.o.docker.container(rec.containerId));
    if (step === 'forget') {
      await this.o.store.delete(rec);
      return 'closed';
    }
    if (step === 'disconnect') {
      await this.o.docker.disconnect(rec.networkId, rec.containerId);
      if (!rec.reconnect) {
        r.disconnected++;
        this.announce(rec, null);
      }
      step = rec.reconnect ? 'connect' : 'stay-disconnected';
    }
    if (step === 'stay-disconnected') return 'open';
    await this.o.docker.connect(rec.networkId, rec.containerId, rec.endpointConfig);
    const after = await this.o.docker.container(rec.containerId);
    this.announce(rec, after?.networks[rec.networkId]?.address ?? null);
    r.reconnected++;
    await this.o.store.delete(rec);
    return 'closed';
  }

  private announce(rec: Readdress, newAddress: string | null): void {
    const reason = reasonOf(rec);
    const outcome = rec.reconnect ? 'reconnected' : 'disconnected';
    const fields = { containerId: rec.containerId, networkId: rec.networkId, endpointId: rec.endpointId, address: rec.address, takenBy: rec.takenBy, newAddress };
    if (rec.reconnect) this.o.log.warn(fields, `container ${rec.container} ${reason}${newAddress ? ` (${newAddress})` : ''}`);
    else this.o.log.error(fields, `container ${rec.container} disconnected: ${reason}`);
    this.o.events.publish('container.readdressed', {
      containerId: rec.containerId,
      container: rec.container,
      networkId: rec.networkId,
      network: rec.network,
      address: rec.address,
      takenBy: rec.takenBy,
      outcome,
      newAddress,
      reason,
    });
  }

  /** A step that fails is a problem of the pass, logged; the next pass tries again. */
  private async attempt<T>(r: ReaddressPass, what: string, f: () => Promise<T>): Promise<T | null> {
    try {
      return await f();
    } catch (err) {
      r.problems.push(`could not ${what}: ${describeError(err)}`);
      this.o.log.warn({ err }, `readdress: could not ${what}: ${describeError(err)}`);
      return null;
    }
  }
}

const key = (r: Readdress): string => `${r.networkId} ${r.containerId}`;
