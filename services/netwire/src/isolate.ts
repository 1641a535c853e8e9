import type { IsolateEndpointsRequest, IsolateEndpointsResult } from '@weave/contracts';
import type { Logger } from '@weave/log';
import type { z } from 'zod';
import type { Kernel, LinkInfo } from './kernel';
import type { NetwireEvents } from './netwire';
import type { EndpointRecord, Store } from './store';

type Request = z.output<typeof IsolateEndpointsRequest>;
type Result = z.output<typeof IsolateEndpointsResult>;
type Displaced = Request['endpoints'][number];

export interface IsolationDeps {
  kernel: Pick<Kernel, 'linkExists' | 'isolateLink'>;
  store: Pick<Store, 'getEndpoint' | 'putEndpoint'>;
  events: NetwireEvents;
  log: Logger;
  now: () => Date;
}

/** Runs `f` under the network's lock, so no create or delete of its endpoints runs meanwhile. */
export type UnderLock = <T>(networkId: string, f: () => Promise<T>) => Promise<T>;

/**
 * Takes endpoints off their network whose address another host holds (a reclaim gave it away
 * while this host was cut off; see the README's "Lost hosts"): the host veth goes down and off
 * the bridge, so the container's frames reach nobody and nobody's reach it, and nothing is
 * removed that Docker still expects to find (the veth pair, the record). Docker's disconnect,
 * which plugin-api sends next, removes them as for any endpoint.
 *
 * The record is marked first: a netwire restarted in between keeps the endpoint off its bridge
 * (planReconcile does not put it back, planReisolate takes it off again). Asking again for an
 * endpoint already isolated checks the kernel again and announces nothing new.
 */
export async function isolateEndpoints(d: IsolationDeps, req: Request, underLock: UnderLock): Promise<Result> {
  const out: Result = { isolated: [], already: 0, unknown: [] };
  for (const e of req.endpoints) {
    const done = await underLock(e.networkId, () => isolateOne(d, e));
    if (done === 'unknown') out.unknown.push(e.endpointId);
    else if (done === 'already') out.already++;
    else out.isolated.push({ networkId: e.networkId, endpointId: e.endpointId, hostVeth: done.hostVeth });
  }
  if (out.isolated.length > 0) {
    const endpoints = req.endpoints.filter((e) => out.isolated.some((i) => i.endpointId === e.endpointId));
    d.log.error({ count: out.isolated.length, endpoints }, `took ${out.isolated.length} endpoint(s) off their network: their addresses are leased by other hosts now`);
  }
  return out;
}

async function isolateOne(d: IsolationDeps, e: Displaced): Promise<EndpointRecord | 'already' | 'unknown'> {
  const rec = await d.store.getEndpoint(e.endpointId);
  if (!rec || rec.networkId !== e.networkId) return 'unknown';
  const already = !!rec.isolated;
  if (!already) await d.store.putEndpoint({ ...rec, isolated: { at: d.now().toISOString(), address: e.address, takenBy: e.takenBy, containerId: e.containerId } });
  if (await d.kernel.linkExists(rec.hostVeth)) await d.kernel.isolateLink(rec.hostVeth);
  if (already) return 'already';
  const ids = { networkId: e.networkId, endpointId: e.endpointId, containerId: e.containerId };
  d.log.error({ ...ids, hostVeth: rec.hostVeth, address: e.address, takenBy: e.takenBy }, `endpoint ${short(e.endpointId)}${e.containerId ? ` of container ${short(e.containerId)}` : ''} taken off its network: ${e.address} is leased by ${e.takenBy}`);
  d.events.publish('endpoint.isolated', { ...ids, hostVeth: rec.hostVeth, address: e.address, takenBy: e.takenBy });
  return rec;
}

/** Isolated endpoints whose veth is back up or on a bridge (someone, or a reboot's replay, put it there): taken off again at reconcile. */
export function planReisolate(endpoints: readonly EndpointRecord[], links: readonly LinkInfo[]): string[] {
  const byName = new Map(links.map((l) => [l.name, l]));
  return endpoints.flatMap((e) => {
    const l = byName.get(e.hostVeth);
    return e.isolated && l && (l.up || l.master !== null) ? [e.hostVeth] : [];
  });
}

const short = (id: string): string => id.slice(0, 12);
