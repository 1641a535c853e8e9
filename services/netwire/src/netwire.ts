import { EventDataOf, EventKindOf, formatPortRequest, formatPublishedPort, NetworkSpec, netwireRpc, ResOf } from '@weave/contracts';
import { asWeaveError, ConflictError, describeError, errorFromCode, InvalidRequestError, NotFoundError, WeaveError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { parseIpInCidr, formatIp } from '@weave/netaddr';
import type { z } from 'zod';
import type { BridgeFirewall, Kernel } from './kernel';
import { KeyedMutex } from '@weave/sync';
import { bridgeMac, endpointMac, normaliseMac } from './mac';
import { chooseMtu } from './mtu';
import { wireIdOf } from './wire';
import { dnsNetworkOf } from './dns/networks';
import { bridgeName, containerVethName, hostVethName } from './names';
import { planPorts } from './ports';
import { isolateEndpoints, planReisolate } from './isolate';
import { planReconcile } from './reconcile';
import { Rollback, withRollback } from './rollback';
import type { EndpointRecord, NetworkRecord, Store } from './store';
import { planEndpointSweep, planNetworkSweep } from './sweep';

type Methods = (typeof netwireRpc)['methods'];
type Req<M extends keyof Methods> = z.output<Methods[M]['req']>;
type Res<M extends keyof Methods> = ResOf<typeof netwireRpc, M>;
export type ReconcileReport = EventDataOf<'netwire', 'reconciled'> & {
  removedFirewall: string[];
  reattachedEndpoints: string[];
  removedPorts: string[];
  restoredPorts: string[];
  problems: number;
};

/** Where netwire's events go; the bus's EventPublisher in production, a recorder in tests. */
export interface NetwireEvents {
  publish<K extends EventKindOf<'netwire'>>(kind: K, data: EventDataOf<'netwire', K>): void;
}

export interface NetwireDeps {
  /** This host's name; links are tagged with it. */
  host: string;
  kernel: Kernel;
  store: Store;
  events: NetwireEvents;
  log: Logger;
  /** The host-wide MTU (WEAVE_MTU), when set; otherwise it comes from the underlay. */
  mtu: number | null;
  /** Encapsulation overhead the default MTU leaves room for; default the plain sleeve's. */
  mtuOverhead?: number;
  /** The underlay addresses of the mesh's other hosts, whose routes bound a new network's MTU. */
  peerAddresses?: () => string[];
  /** The resolvers whose queries from containers go to weave DNS (see dns/upstreams.ts); none: DNS is off. */
  dnsIntercepted?: readonly string[];
  random?: (n: number) => Uint8Array;
  now?: () => Date;
}

/**
 * netwire's behaviour: Docker's network and endpoint lifecycle on one host, turned into bridges,
 * veths and firewall rules through `Kernel`, remembered in `Store`. Operations on one network
 * run one at a time; each that changes the kernel in several steps undoes them if a later step
 * fails, so a failed call leaves nothing behind.
 */
export class Netwire {
  private readonly mutex = new KeyedMutex();
  /**
   * Host ports are one pool for every network: choosing and taking one happens under this, inside
   * the network's lock. A lock of its own, not a key of `mutex`: `exclusive` there waits for what
   * holds a network, which would wait for this.
   */
  private readonly portLock = new KeyedMutex();
  private readonly k: Kernel;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly startedAt: Date;

  constructor(private readonly d: NetwireDeps) {
    this.k = d.kernel;
    this.log = d.log;
    this.now = d.now ?? (() => new Date());
    this.startedAt = this.now();
  }

  createNetwork(spec: Req<'createNetwork'>): Promise<Res<'createNetwork'>> {
    return this.mutex.run(spec.networkId, async () => {
      const id = spec.networkId;
      const bridge = bridgeName(id);
      const existing = await this.d.store.getNetwork(id);
      if (existing && JSON.stringify(existing.spec) !== JSON.stringify(spec)) {
        throw new ConflictError(`network ${short(id)} already exists on this host with a different configuration`);
      }
      const present = (await this.k.listLinks()).find((l) => l.name === bridge);
      if (existing && present?.kind === 'bridge') {
        // The same create again (a retry): make sure everything is in place; nothing to undo.
        await this.ensureNetwork(existing).catch(rethrowAs(`cannot create network ${short(id)}`));
        return { bridge, mtu: existing.mtu };
      }
      const mtu = existing?.mtu ?? (await this.mtuFor(spec));
      const record: NetworkRecord = { spec, bridge, mtu, createdAt: existing?.createdAt ?? this.now().toISOString() };
      await withRollback(this.log, async (rb) => {
        // A link with our name but no record is a crash leftover: start from a clean bridge.
        if (present) await this.k.deleteLink(bridge);
        await this.buildNetwork(record, rb);
        await this.d.store.putNetwork(record);
      }).catch(rethrowAs(`cannot create network ${short(id)}`));
      this.d.events.publish('network.created', { networkId: id, bridge, mtu, subnets: subnetsOf(spec), ...wireOf(spec) });
      return { bridge, mtu };
    });
  }

  deleteNetwork({ networkId }: Req<'deleteNetwork'>): Promise<Res<'deleteNetwork'>> {
    return this.mutex.run(networkId, async () => {
      const bridge = bridgeName(networkId);
      const record = await this.d.store.getNetwork(networkId);
      const links = await this.k.listLinks();
      const endpoints = (await this.d.store.listEndpoints()).filter((e) => e.networkId === networkId);
      // Docker only logs teardown errors and forgets the network regardless, so every step is
      // tried; what fails is reported, and reconcile removes it at the next start.
      const t = new Teardown(this.log);
      for (const e of endpoints) {
        await t.step(`delete veth ${e.hostVeth}`, () => this.k.deleteLink(e.hostVeth));
        await t.step(`forget endpoint ${short(e.endpointId)}`, () => this.d.store.deleteEndpoint(e.endpointId));
      }
      for (const l of links.filter((l) => l.master === bridge && l.kind === 'veth')) {
        await t.step(`delete veth ${l.name}`, () => this.k.deleteLink(l.name));
      }
      await t.step(`remove published ports on ${bridge}`, () => this.k.removePortRules({ bridge }));
      await t.step(`remove firewall rules of ${bridge}`, () => this.k.removeFirewall(bridge));
      await t.step(`delete bridge ${bridge}`, () => this.k.deleteLink(bridge));
      await t.step(`forget network ${short(networkId)}`, () => this.d.store.deleteNetwork(networkId));
      if (record || links.some((l) => l.name === bridge)) this.d.events.publish('network.deleted', { networkId, bridge });
      t.throwIfFailed(`network ${short(networkId)} was not removed cleanly`);
      return {};
    });
  }

  createEndpoint(req: Req<'createEndpoint'>): Promise<Res<'createEndpoint'>> {
    return this.mutex.run(req.networkId, async () => {
      const net = await this.needNetwork(req.networkId);
      const existing = await this.d.store.getEndpoint(req.endpointId);
      if (existing && existing.networkId !== req.networkId) {
        throw new ConflictError(`endpoint ${short(req.endpointId)} already exists on network ${short(existing.networkId)}`);
      }
      // Single-link checks, not a listing: this is on the path of every container start.
      if (existing && (await this.k.linkExists(existing.hostVeth))) return { mac: existing.macGenerated ? existing.mac : null };
      const mac = req.mac ? normaliseMac(req.mac) : endpointMac(req.address, this.d.random);
      const ep: EndpointRecord = {
        networkId: req.networkId,
        endpointId: req.endpointId,
        address: req.address,
        addressV6: req.addressV6,
        mac,
        macGenerated: req.mac === null,
        hostVeth: hostVethName(req.endpointId),
        containerVeth: containerVethName(req.endpointId),
        createdAt: this.now().toISOString(),
      };
      await withRollback(this.log, async (rb) => {
        // The bridge can have been removed behind our back; the network is still recorded, so
        // make it again rather than fail the container.
        if (!(await this.k.linkExists(net.bridge))) await this.buildNetwork(net, rb);
        // Names come from the endpoint id, so a link already there is a leftover of a failed try.
        for (const name of [ep.hostVeth, ep.containerVeth]) if (await this.k.linkExists(name)) await this.k.deleteLink(name);
        await this.plugVeth(net, ep, rb);
        await this.d.store.putEndpoint(ep);
      }).catch(rethrowAs(`cannot create endpoint ${short(req.endpointId)} on network ${short(req.networkId)}`));
      this.d.events.publish('endpoint.created', { networkId: ep.networkId, endpointId: ep.endpointId, hostVeth: ep.hostVeth, mac, address: ep.address });
      // Docker rolls the endpoint back if a driver fills a field it set itself.
      return { mac: ep.macGenerated ? mac : null };
    });
  }

  join(req: Req<'join'>): Promise<Res<'join'>> {
    return this.mutex.run(req.networkId, async () => {
      const ep = await this.needEndpoint(req);
      const net = await this.needNetwork(req.networkId);
      if (!(await this.k.linkExists(ep.hostVeth))) {
        // Lost since CreateEndpoint (removed by hand, or a crash in between): Docker is about to
        // look for the container end, so make the pair again.
        await withRollback(this.log, (rb) => this.plugVeth(net, ep, rb)).catch(rethrowAs(`cannot join endpoint ${short(ep.endpointId)}`));
      }
      this.d.events.publish('endpoint.joined', { networkId: req.networkId, endpointId: req.endpointId, sandboxKey: req.sandboxKey });
      return { srcName: ep.containerVeth, ...gatewaysForJoin(net.spec), internal: net.spec.internal };
    });
  }

  async leave(req: Req<'leave'>): Promise<Res<'leave'>> {
    // Nothing to undo in the kernel: the container end is still inside the container here, and
    // DeleteEndpoint removes the pair once Docker has moved it back.
    this.d.events.publish('endpoint.left', { networkId: req.networkId, endpointId: req.endpointId });
    return {};
  }

  deleteEndpoint(req: Req<'deleteEndpoint'>): Promise<Res<'deleteEndpoint'>> {
    return this.mutex.run(req.networkId, async () => {
      const ep = await this.d.store.getEndpoint(req.endpointId);
      const hostVeth = ep?.hostVeth ?? hostVethName(req.endpointId);
      // Docker revokes before it deletes; this is for when the revoke did not reach us. The rules
      // go before the record, so a failure leaves the record for reconcile to find them by.
      if (ep?.ports?.length) await this.removePorts(ep, bridgeName(req.networkId));
      if (ep) await this.d.store.deleteEndpoint(req.endpointId);
      // By now Docker has moved the container end back to our namespace; deleting the host end
      // takes the pair. The kernel needs ~20 ms for it (an RCU grace period), which every
      // `docker stop` would otherwise wait for, so it happens right after the reply. The record
      // is gone first: a crash in between leaves a tagged veth without a record, which reconcile
      // removes. `idle()` and reconcile wait for deletions in flight.
      // The turn of the event loop first lets the reply go out: spawning `ip` blocks the loop
      // for milliseconds, and NATS flushes replies on the next turn.
      void this.mutex
        .run(`veth:${hostVeth}`, async () => {
          await new Promise((r) => setImmediate(r));
          return this.k.deleteLink(hostVeth);
        })
        .catch((err) => this.log.warn({ err, hostVeth }, `could not delete veth ${hostVeth}; reconcile will: ${describeError(err)}`));
      if (ep) this.d.events.publish('endpoint.deleted', { networkId: req.networkId, endpointId: req.endpointId });
      return {};
    });
  }

  /**
   * Publishes an endpoint's ports on this host (Docker's ProgramExternalConnectivity), replacing
   * what it had: all or none. A port asked for by number must be free of weave's, Docker's and
   * listening processes' ports; the same request again keeps the ports it was given.
   */
  publishPorts(req: Req<'publishPorts'>): Promise<Res<'publishPorts'>> {
    return this.mutex.run(req.networkId, () =>
      this.portLock.run('host', async () => {
        const ep = await this.needEndpoint(req);
        const net = await this.needNetwork(req.networkId);
        if (req.ports.length === 0) return (await this.dropPorts(ep, net.bridge), { ports: [] });
        const asked = req.ports.map(formatPortRequest);
        if (net.spec.internal) {
          throw new InvalidRequestError(`network ${short(req.networkId)} is internal (--internal): it has no way in or out, so it publishes no ports (${asked.join(', ')})`);
        }
        if (!ep.address) throw new InvalidRequestError(`endpoint ${short(ep.endpointId)} has no IPv4 address to publish ${asked.join(', ')} to`);
        const [held, ephemeral] = await Promise.all([this.k.portsInUse(), this.k.ephemeralPorts()]);
        const ports = planPorts({
          requests: req.ports,
          containerIp: formatIp(parseIpInCidr(ep.address).ip),
          held: held.filter((h) => h.hostVeth !== ep.hostVeth),
          ephemeral,
          previous: ep.ports,
        });
        const target = { bridge: net.bridge, hostVeth: ep.hostVeth };
        await withRollback(this.log, async (rb) => {
          // Undone by putting back what the endpoint had: a rule half-made goes, a port it kept stays.
          rb.push(`restore the published ports of ${ep.hostVeth}`, () => this.k.ensurePortRules({ ...target, ports: ep.ports ?? [] }));
          await this.k.ensurePortRules({ ...target, ports });
          await this.d.store.putEndpoint({ ...ep, ports });
        }).catch(rethrowAs(`cannot publish ${asked.join(', ')} for endpoint ${short(ep.endpointId)}`));
        this.d.events.publish('ports.published', { networkId: req.networkId, endpointId: req.endpointId, ports });
        this.log.info({ endpointId: req.endpointId, ports: ports.map(formatPublishedPort) }, 'published ports');
        return { ports };
      }),
    );
  }

  /**
   * Docker's RevokeExternalConnectivity, sent at every stop of a container with a gateway: the
   * endpoint's ports go. A record without ports is trusted (nothing to ask the kernel); rules a
   * crash left behind are reconcile's.
   */
  unpublishPorts(req: Req<'unpublishPorts'>): Promise<Res<'unpublishPorts'>> {
    return this.mutex.run(req.networkId, async () => {
      const ep = await this.d.store.getEndpoint(req.endpointId);
      const bridge = bridgeName(req.networkId);
      if (ep && ep.networkId === req.networkId) await this.dropPorts(ep, bridge);
      else if (!ep) await this.k.removePortRules({ bridge, hostVeth: hostVethName(req.endpointId) });
      return {};
    });
  }

  /** Takes an endpoint's published ports away: rules first, then the record. */
  private async dropPorts(ep: EndpointRecord, bridge: string): Promise<void> {
    if (!ep.ports?.length) return;
    await this.removePorts(ep, bridge, () => this.d.store.putEndpoint({ ...ep, ports: [] }));
  }

  /** Removes an endpoint's published-port rules, then does `andThen` (its record's part), then says so. */
  private async removePorts(ep: EndpointRecord, bridge: string, andThen: () => Promise<void> = async () => {}): Promise<void> {
    await this.k.removePortRules({ bridge, hostVeth: ep.hostVeth });
    await andThen();
    this.d.events.publish('ports.unpublished', { networkId: ep.networkId, endpointId: ep.endpointId, ports: ep.ports ?? [] });
  }

  async status(): Promise<Res<'status'>> {
    const [networks, endpoints, links] = await Promise.all([this.d.store.listNetworks(), this.d.store.listEndpoints(), this.k.listLinks()]);
    const present = new Set(links.map((l) => l.name));
    return {
      networks: networks.map((n) => ({
        networkId: n.spec.networkId,
        bridge: n.bridge,
        ...wireOf(n.spec),
        mtu: n.mtu,
        internal: n.spec.internal,
        subnets: subnetsOf(n.spec),
        endpoints: endpoints.filter((e) => e.networkId === n.spec.networkId).length,
        multicast: n.spec.multicast === true,
      })),
      endpoints: endpoints.map((e) => ({
        networkId: e.networkId,
        endpointId: e.endpointId,
        address: e.address,
        addressV6: e.addressV6,
        mac: e.mac,
        hostVeth: e.hostVeth,
        present: present.has(e.hostVeth),
        ...(e.isolated ? { isolated: e.isolated } : {}),
        ...(e.ports?.length ? { ports: e.ports } : {}),
      })),
    };
  }

  /**
   * Makes the kernel agree with the records: leftovers of a crash or of calls Docker made while
   * we were down are removed, recorded networks whose bridge vanished are rebuilt. Runs alone.
   * The firewall chains are required, so failing to ensure them fails reconcile; any other
   * single repair that fails is logged and counted, and the rest still happen.
   */
  reconcile(): Promise<ReconcileReport> {
    return this.mutex.exclusive(async () => {
      await this.k.ensureFirewallChains();
      const [links, networks, endpoints, firewallBridges, portOwners] = await Promise.all([
        this.k.listLinks(),
        this.d.store.listNetworks(),
        this.d.store.listEndpoints(),
        this.k.firewallBridges(),
        this.k.portRuleOwners(),
      ]);
      const plan = planReconcile({ owner: this.d.host, links, networks, endpoints, firewallBridges, portOwners });
      const r: ReconcileReport = {
        removedLinks: [],
        restoredNetworks: [],
        forgottenEndpoints: [],
        removedFirewall: [],
        reattachedEndpoints: [],
        removedPorts: [],
        restoredPorts: [],
        problems: 0,
      };
      const attempt = async (what: string, f: () => Promise<unknown>): Promise<boolean> => {
        try {
          await f();
          return true;
        } catch (err) {
          r.problems++;
          this.log.warn({ err }, `reconcile: could not ${what}: ${describeError(err)}`);
          return false;
        }
      };
      for (const name of plan.removeLinks) if (await attempt(`remove leftover link ${name}`, () => this.k.deleteLink(name))) r.removedLinks.push(name);
      for (const b of plan.removeFirewall) if (await attempt(`remove leftover rules of ${b}`, () => this.k.removeFirewall(b))) r.removedFirewall.push(b);
      for (const n of plan.restoreNetworks) {
        const id = n.spec.networkId;
        if (await attempt(`restore network ${short(id)}`, () => withRollback(this.log, (rb) => this.buildNetwork(n, rb)))) r.restoredNetworks.push(id);
      }
      for (const n of plan.ensureNetworks) await attempt(`ensure network ${short(n.spec.networkId)}`, () => this.ensureNetwork(n));
      for (const a of plan.reattach) {
        if (await attempt(`put ${a.hostVeth} back on ${a.bridge}`, () => this.k.setMaster(a.hostVeth, a.bridge).then(() => this.k.setUp(a.hostVeth)))) {
          r.reattachedEndpoints.push(a.endpointId);
        }
      }
      for (const veth of planReisolate(endpoints, links)) await attempt(`keep ${veth} off its network (its address is another host's)`, () => this.k.isolateLink(veth));
      for (const id of plan.forgetEndpoints) if (await attempt(`forget endpoint ${short(id)}`, () => this.d.store.deleteEndpoint(id))) r.forgottenEndpoints.push(id);
      for (const o of plan.removePorts) if (await attempt(`remove leftover published ports of ${o.hostVeth}`, () => this.k.removePortRules(o))) r.removedPorts.push(o.hostVeth);
      for (const { endpoint: e, bridge } of plan.restorePorts) {
        const ports = e.ports ?? [];
        if (await attempt(`publish again ${ports.map(formatPublishedPort).join(', ')} of ${short(e.endpointId)}`, () => this.k.ensurePortRules({ bridge, hostVeth: e.hostVeth, ports }))) {
          r.restoredPorts.push(e.endpointId);
        }
      }
      const { problems, ...event } = r;
      this.d.events.publish('reconciled', event);
      if (problems > 0) this.log.warn({ problems }, 'reconcile left some things as they were; see the warnings above');
      return r;
    });
  }

  /**
   * Makes netwire agree with Docker's view of this host: removes the endpoints (veth, then record)
   * of Docker's networks that Docker does not have, and the networks (with whatever they still
   * hold) Docker does not have at all, each only if older than `olderThan` (see sweep.ts). Each
   * network is swept under its lock, so no create or delete in it runs meanwhile; records are
   * listed once and each is looked up again under the lock, so one deleted in between is not
   * reported twice. A removal that fails is logged and left for the next pass.
   */
  async reconcileEndpoints(req: Req<'reconcileEndpoints'>): Promise<Res<'reconcileEndpoints'>> {
    const olderThan = new Date(req.olderThan);
    const [all, networks] = await Promise.all([this.d.store.listEndpoints(), this.d.store.listNetworks()]);
    const out: Res<'reconcileEndpoints'> = { removed: [], removedNetworks: [], spared: 0 };
    for (const n of req.networks) {
      const endpoints = all.filter((e) => e.networkId === n.networkId);
      const plan = planEndpointSweep({ endpoints, keep: new Set(n.keep), olderThan, unknownAge: this.startedAt });
      out.spared += plan.spared;
      if (plan.remove.length === 0) continue;
      await this.mutex.run(n.networkId, async () => {
        for (const e of plan.remove) if (await this.sweepEndpoint(e)) out.removed.push({ networkId: e.networkId, endpointId: e.endpointId, hostVeth: e.hostVeth });
      });
    }
    const gone = planNetworkSweep({ networks, keep: new Set(req.networks.map((n) => n.networkId)), olderThan, unknownAge: this.startedAt });
    out.spared += gone.spared;
    for (const n of gone.remove) if (await this.sweepNetwork(n)) out.removedNetworks.push({ networkId: n.spec.networkId, bridge: n.bridge });
    if (out.removed.length + out.removedNetworks.length > 0) {
      this.log.info({ ...out }, 'removed endpoints and networks Docker does not have');
      this.d.events.publish('endpoints.reconciled', out);
    }
    return out;
  }

  /** Docker forgot the network (DeleteNetwork failed while we were down): tear it down as DeleteNetwork would. */
  private async sweepNetwork(n: NetworkRecord): Promise<boolean> {
    const id = n.spec.networkId;
    try {
      // Looked up again: a DeleteNetwork since the listing has done the work already.
      if (!(await this.d.store.getNetwork(id))) return false;
      await this.deleteNetwork({ networkId: id });
      return true;
    } catch (err) {
      this.log.warn({ err, networkId: id }, `could not remove network ${short(id)}, which Docker does not have; the next pass tries again: ${describeError(err)}`);
      return false;
    }
  }

  private async sweepEndpoint(e: EndpointRecord): Promise<boolean> {
    try {
      const now = await this.d.store.getEndpoint(e.endpointId);
      if (!now || now.networkId !== e.networkId) return false;
      // The ports and the veth first: a failure in between leaves a record, which the next pass finds again.
      if (now.ports?.length) await this.removePorts(now, bridgeName(now.networkId));
      await this.k.deleteLink(e.hostVeth);
      await this.d.store.deleteEndpoint(e.endpointId);
    } catch (err) {
      this.log.warn({ err, endpointId: e.endpointId }, `could not remove endpoint ${short(e.endpointId)}, which Docker does not have; the next pass tries again: ${describeError(err)}`);
      return false;
    }
    this.d.events.publish('endpoint.deleted', { networkId: e.networkId, endpointId: e.endpointId });
    return true;
  }

  /** Takes endpoints whose address another host holds off their network (see isolate.ts). */
  isolateEndpoints(req: Req<'isolateEndpoints'>): Promise<Res<'isolateEndpoints'>> {
    return isolateEndpoints({ ...this.d, now: this.now }, req, (networkId, f) => this.mutex.run(networkId, f));
  }

  /** Resolves once every operation started before it has finished (for a clean stop). */
  idle(): Promise<void> {
    return this.mutex.exclusive(async () => {});
  }

  private async needEndpoint(req: { networkId: string; endpointId: string }): Promise<EndpointRecord> {
    const ep = await this.d.store.getEndpoint(req.endpointId);
    if (!ep || ep.networkId !== req.networkId) {
      throw new NotFoundError(`endpoint ${short(req.endpointId)} of network ${short(req.networkId)} is not known to netwire on this host`);
    }
    return ep;
  }

  private async needNetwork(networkId: string): Promise<NetworkRecord> {
    const net = await this.d.store.getNetwork(networkId);
    if (!net) {
      throw new NotFoundError(
        `network ${short(networkId)} is not known to netwire on this host (it was never created here, or already deleted)`,
      );
    }
    return net;
  }

  /**
   * The network's MTU: the user's, else the narrowest of this host's paths (the default route's
   * interface and the route to every peer the router knows) less the encapsulation. A packet
   * that still meets a narrower hop gets ICMP "fragmentation needed" from the data path.
   */
  private async mtuFor(spec: NetworkSpec): Promise<number> {
    if (spec.mtu !== null || this.d.mtu !== null) return chooseMtu({ network: spec.mtu, hostSetting: this.d.mtu, underlay: null, overhead: this.d.mtuOverhead });
    const paths = await Promise.all([this.k.underlayMtu(), ...(this.d.peerAddresses?.() ?? []).map((a) => this.k.routeMtu(a))]);
    const known = paths.filter((m): m is number => m !== null);
    return chooseMtu({ network: null, hostSetting: null, underlay: known.length ? Math.min(...known) : null, overhead: this.d.mtuOverhead });
  }

  /** Bridge, gateway addresses, link up, firewall: a network's whole kernel state, undoable. */
  private async buildNetwork(n: NetworkRecord, rb: Rollback): Promise<void> {
    await this.k.ensureFirewallChains();
    await this.k.createBridge(n.bridge, { mtu: n.mtu, mac: wireOf(n.spec).gatewayMac, owner: this.d.host });
    rb.push(`delete bridge ${n.bridge}`, () => this.k.deleteLink(n.bridge));
    for (const a of bridgeAddresses(n.spec)) await this.k.addAddress(n.bridge, a);
    await this.k.setUp(n.bridge);
    // Registered before the rules go in: a failure half-way through leaves some of them, and
    // removal goes by tag, so it takes exactly ours.
    rb.push(`remove firewall rules of ${n.bridge}`, () => this.k.removeFirewall(n.bridge));
    await this.k.ensureFirewall(firewallOf(n, this.d.dnsIntercepted ?? []));
  }

  /** The idempotent part of buildNetwork, for a bridge that exists. */
  private async ensureNetwork(n: NetworkRecord): Promise<void> {
    await this.k.ensureFirewallChains();
    for (const a of bridgeAddresses(n.spec)) await this.k.addAddress(n.bridge, a);
    await this.k.setUp(n.bridge);
    await this.k.ensureFirewall(firewallOf(n, this.d.dnsIntercepted ?? []));
  }

  private async plugVeth(net: NetworkRecord, ep: EndpointRecord, rb: Rollback): Promise<void> {
    await this.k.createVethPair(ep.hostVeth, ep.containerVeth, { mtu: net.mtu, peerMac: ep.mac, owner: this.d.host, master: net.bridge });
    rb.push(`delete veth ${ep.hostVeth}`, () => this.k.deleteLink(ep.hostVeth));
  }
}

/** Runs every teardown step even when one fails, and reports the failures together at the end. */
class Teardown {
  private readonly failures: unknown[] = [];
  constructor(private readonly log: Logger) {}

  async step(what: string, f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
    } catch (err) {
      this.failures.push(err);
      this.log.warn({ err }, `could not ${what}: ${describeError(err)}`);
    }
  }

  throwIfFailed(what: string): void {
    const first = this.failures[0];
    if (first === undefined) return;
    const more = this.failures.length > 1 ? ` (and ${this.failures.length - 1} more problems, see netwire's log)` : '';
    throw rewrap(`${what}${more}`, first);
  }
}

const short = (id: string): string => id.slice(0, 12);
const subnetsOf = (spec: NetworkSpec): string[] => [...spec.ipv4, ...spec.ipv6].map((p) => p.pool);

/** Internal networks get no address on the bridge: nothing on them may reach the host or beyond. */
const bridgeAddresses = (spec: NetworkSpec): string[] =>
  spec.internal ? [] : [...spec.ipv4, ...spec.ipv6].flatMap((p) => (p.gateway ? [p.gateway] : []));

function gatewaysForJoin(spec: NetworkSpec): { gateway: string | null; gatewayV6: string | null } {
  // On an internal network Docker would install a returned gateway as the default route.
  const first = (pools: NetworkSpec['ipv4']): string | null => {
    const gw = spec.internal ? undefined : pools.find((p) => p.gateway)?.gateway;
    return gw ? formatIp(parseIpInCidr(gw).ip) : null;
  };
  return { gateway: first(spec.ipv4), gatewayV6: first(spec.ipv6) };
}

function firewallOf(n: NetworkRecord, dnsIntercepted: readonly string[]): BridgeFirewall {
  const dns = dnsIntercepted.length > 0 ? dnsNetworkOf(n) : null;
  return {
    bridge: n.bridge,
    internal: n.spec.internal,
    masquerade: n.spec.internal ? [] : n.spec.ipv4.map((p) => p.pool),
    dns: dns ? { gateway: dns.gateway, intercepted: [...dnsIntercepted] } : null,
  };
}

/** Puts `what` in front of a failure, keeping its code (not_found stays not_found) and its cause. */
function rewrap(what: string, e: unknown): WeaveError {
  return errorFromCode(asWeaveError(e).code, what, e);
}
const rethrowAs =
  (what: string) =>
  (e: unknown): never => {
    const w = asWeaveError(e);
    // Errors about the request itself already say what is wrong with it.
    throw w.code === 'not_found' || w.code === 'conflict' || w.code === 'invalid' ? w : rewrap(what, e);
  };

/** The network's mesh-wide identity: its id on the wire and its (anycast) gateway MAC. */
function wireOf(spec: NetworkSpec): { wireId: number; gatewayMac: string } {
  const wireId = wireIdOf(spec);
  return { wireId, gatewayMac: bridgeMac(wireId) };
}
