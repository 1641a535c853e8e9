import type { EndpointRecord } from './store';

export interface EndpointSweepInput {
  /** This host's endpoint records of one network. */
  endpoints: readonly EndpointRecord[];
  /** The endpoints Docker has on that network. */
  keep: ReadonlySet<string>;
  /** Only endpoints made before this moment may go. */
  olderThan: Date;
  /** When a record made before records had a time counts as made: this process's start. */
  unknownAge: Date;
}

export interface EndpointSweep {
  remove: EndpointRecord[];
  /** Endpoints Docker does not have but that are too young to tell from a CreateEndpoint in flight. */
  spared: number;
}

/**
 * Which endpoints of one network Docker has forgotten: a DeleteEndpoint sent while netwire was
 * down, or a CreateEndpoint whose reply was lost, which Docker then rolled back without telling
 * us. Docker stores an endpoint only once CreateEndpoint has answered, so one made shortly before
 * Docker was listed may be missing from the listing and still be about to exist: only records
 * made before `olderThan` (the listing's start less a grace period) go. A record without a time
 * (written before records had one) counts as made at `unknownAge`, which errs towards keeping it.
 */
export function planEndpointSweep(i: EndpointSweepInput): EndpointSweep {
  const out: EndpointSweep = { remove: [], spared: 0 };
  for (const e of i.endpoints) {
    if (i.keep.has(e.endpointId)) continue;
    const createdAt = e.createdAt === undefined ? i.unknownAge.getTime() : Date.parse(e.createdAt);
    if (createdAt < i.olderThan.getTime()) out.remove.push(e);
    else out.spared++;
  }
  return out;
}
