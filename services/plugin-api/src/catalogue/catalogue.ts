import { KV, kvGet, KvMirror, kvMutate, mirrorKv } from '@weave/bus';
import { CatalogueEntry } from '@weave/contracts';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { CoalescedPasses } from '@weave/sync';
import { DockerApiError, DockerEngine } from './docker-engine';
import { ActiveEntry, CatalogueAction, isNewerThan, LocalNetwork, planCatalogue, RemovedEntry } from './plan';

export interface CatalogueEvents {
  publish(kind: 'network.published', data: { name: string; subnets: string[] }): void;
  publish(kind: 'network.replicated', data: { name: string; createdBy: string }): void;
  publish(kind: 'network.removed', data: { name: string; removedBy: string }): void;
  publish(kind: 'network.conflict', data: { name: string; reason: string }): void;
}

export interface CatalogueOptions {
  host: string;
  /** Our driver name: only networks of this driver are the catalogue's business. */
  driver: string;
  engine: DockerEngine;
  kv: KV;
  events: CatalogueEvents;
  log: Logger;
  now?: () => Date;
  /** A full pass this often, for what no event announces (containers leaving a removed network). */
  resyncMs?: number;
}

/** Names may hold characters KV keys cannot (`weave:foo`); keys are their base64url. */
const keyOf = (name: string): string => Buffer.from(name, 'utf8').toString('base64url');

/**
 * Keeps this host's Docker in line with the mesh-wide catalogue. Passes run one at a time; a
 * trigger during a pass (a Docker event, a catalogue change, the timer) makes exactly one more.
 */
export class Catalogue {
  private readonly passes = new CoalescedPasses(
    () => this.pass(),
    (err) => {
      if (!this.stopped) this.o.log.warn({ err }, `network catalogue pass failed: ${describeError(err)}`);
    },
  );
  private readonly stops: Array<() => void> = [];
  private stopped = false;
  private mirror: KvMirror<CatalogueEntry> | null = null;
  private readonly now: () => Date;
  private readonly reported = new Map<string, string>();
  /**
   * Entries (by name, the `createdAt` of the incarnation) this host has had a network for. One of
   * those missing from Docker was removed here, even before its destroy event arrives: it gets a
   * tombstone, never a new copy.
   */
  private readonly hadHere = new Map<string, string>();

  constructor(private readonly o: CatalogueOptions) {
    this.now = o.now ?? (() => new Date());
  }

  async start(): Promise<void> {
    this.stops.push(this.o.engine.watchNetworks(this.o.driver, (e) => void this.onDockerEvent(e.action, e.name)));
    this.followCatalogue();
    const timer = setInterval(() => this.trigger(), this.o.resyncMs ?? 10_000);
    this.stops.push(() => clearInterval(timer));
    await this.trigger();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.stops.splice(0)) s();
    // First, so a pass waiting for the catalogue gives up now rather than at its timeout.
    await this.mirror?.stop();
    await this.passes.idle();
  }

  /**
   * The catalogue in memory, from one watch: other hosts' networks arrive in well under a second,
   * and a pass lists nothing (a listing per pass creates a JetStream consumer, which can stall in
   * a fresh cluster). A watch that fails (JetStream still electing a leader as a mesh starts, NATS
   * restarting) is reopened by the mirror, and its fresh snapshot is a change too: a pass then
   * picks up what changed meanwhile, rather than leaving it to the periodic pass.
   */
  private followCatalogue(): void {
    this.mirror = mirrorKv(this.o.kv, CatalogueEntry, { log: this.o.log });
    this.stops.push(this.mirror.onChange(() => void this.trigger()));
  }

  /** Runs a pass now, or one more after the current pass; resolves when that pass is done. */
  trigger(): Promise<void> {
    return this.passes.request();
  }

  private async onDockerEvent(action: string, name: string): Promise<void> {
    if (action === 'destroy') await this.removedHere(name);
    await this.trigger();
  }

  /**
   * Someone removed the network on this host: that removes it from the mesh. (When the removal
   * was ours, following a tombstone, the entry is a tombstone already and nothing changes.)
   */
  private async removedHere(name: string, incarnation?: string): Promise<void> {
    this.hadHere.delete(name);
    const tombstone: RemovedEntry = { state: 'removed', name, removedBy: this.o.host, removedAt: this.now().toISOString() };
    const changed = await kvMutate(this.o.kv, keyOf(name), CatalogueEntry, (cur) =>
      cur?.state === 'active' && (incarnation === undefined || cur.createdAt === incarnation)
        ? { change: { put: tombstone }, result: true }
        : { change: { keep: true }, result: false },
    ).catch((err) => (this.o.log.warn({ err, name }, 'could not record a network removal'), false));
    if (changed) this.o.events.publish('network.removed', { name, removedBy: this.o.host });
  }

  private async pass(): Promise<void> {
    const local = await this.o.engine.networks(this.o.driver);
    const catalogue = await this.entries();
    for (const l of local) {
      const c = catalogue.get(l.name);
      if (c?.state === 'active') this.hadHere.set(l.name, c.createdAt);
    }
    for (const a of planCatalogue(this.o.host, local, catalogue, this.now())) await this.act(a);
  }

  /**
   * The catalogue as the watch has it: it can lag a write elsewhere by the watch's delay, which
   * each action allows for (publish decides again inside its compare-and-set, createLocal reads
   * the entry again), and that write's arrival triggers another pass.
   */
  private async entries(): Promise<Map<string, CatalogueEntry>> {
    if (!this.mirror) throw new Error('the catalogue is not started');
    await this.mirror.ready();
    return new Map(this.mirror.entries().map(([, e]) => [e.value.name, e.value]));
  }

  private async act(a: CatalogueAction): Promise<void> {
    switch (a.kind) {
      case 'publish':
        return this.publish(a.entry, a.local);
      case 'createLocal':
        return this.createLocal(a.entry);
      case 'removeLocal':
        return this.removeLocal(a.entry);
      case 'conflict':
        return this.conflict(a.name, a.reason);
    }
  }

  private async publish(entry: ActiveEntry, local: LocalNetwork): Promise<void> {
    // Decided again on the entry as it is now, inside the compare-and-set: the pass's view can be
    // stale. Never over an active entry (another host published the name meanwhile: the next pass
    // compares the two), and over a tombstone only for a network made after the removal.
    const put = await kvMutate(this.o.kv, keyOf(entry.name), CatalogueEntry, (cur) =>
      cur?.state === 'active' || (cur?.state === 'removed' && !isNewerThan(local, cur))
        ? { change: { keep: true }, result: false }
        : { change: { put: entry }, result: true },
    );
    if (put) this.o.events.publish('network.published', { name: entry.name, subnets: entry.subnets.map((s) => s.subnet) });
  }

  private async createLocal(entry: ActiveEntry): Promise<void> {
    // Had here and now gone: removed here, its destroy event not yet handled.
    if (this.hadHere.get(entry.name) === entry.createdAt) return this.removedHere(entry.name, entry.createdAt);
    // The pass's view may predate a removal elsewhere: only copy the entry still in force.
    const now = await kvGet(this.o.kv, keyOf(entry.name), CatalogueEntry);
    if (now?.value.state !== 'active' || now.value.createdAt !== entry.createdAt) return;
    try {
      await this.o.engine.createNetwork(this.o.driver, entry);
      this.hadHere.set(entry.name, entry.createdAt);
      this.o.events.publish('network.replicated', { name: entry.name, createdBy: entry.createdBy });
      this.o.log.info({ name: entry.name, createdBy: entry.createdBy }, 'created network from the mesh catalogue');
    } catch (e) {
      if (e instanceof DockerApiError && e.status === 409) return; // made here meanwhile
      this.conflict(entry.name, `could not create it here: ${describeError(e)}`);
    }
  }

  private async removeLocal(entry: RemovedEntry): Promise<void> {
    try {
      await this.o.engine.removeNetwork(entry.name);
      this.o.log.info({ name: entry.name, removedBy: entry.removedBy }, 'removed network as the mesh catalogue says');
    } catch (e) {
      if (e instanceof DockerApiError && e.status === 404) return;
      this.conflict(entry.name, `removed by ${entry.removedBy}, but not here: ${describeError(e)}`);
    }
  }

  /** Reported once per distinct reason, so a standing conflict does not flood the events. */
  private conflict(name: string, reason: string): void {
    if (this.reported.get(name) === reason) return;
    this.reported.set(name, reason);
    this.o.log.warn({ name }, `network catalogue conflict: ${reason}`);
    this.o.events.publish('network.conflict', { name, reason });
  }
}
