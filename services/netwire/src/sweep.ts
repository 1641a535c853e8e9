import type { EndpointRecord, NetworkRecord } from './store';

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
  return sweep(i.endpoints, (e) => e.endpointId, i);
}

/**
 * Which networks Docker has forgotten: a DeleteNetwork Docker sent while netwire was down (Docker
 * removes the network regardless). `keep` is every network Docker has on this host. The same
 * race as for endpoints: Docker stores a network only once CreateNetwork has answered.
 */
export function planNetworkSweep(i: { networks: readonly NetworkRecord[]; keep: ReadonlySet<string>; olderThan: Date; unknownAge: Date }): { remove: NetworkRecord[]; spared: number } {
  return sweep(i.networks, (n) => n.spec.networkId, i);
}

function sweep<T extends { createdAt?: string | undefined }>(
  records: readonly T[],
  idOf: (r: T) => string,
  i: { keep: ReadonlySet<string>; olderThan: Date; unknownAge: Date },
): { remove: T[]; spared: number } {
  const out = { remove: [] as T[], spared: 0 };
  for (const r of records) {
    if (i.keep.has(idOf(r))) continue;
    // A time that does not parse (NaN) is never older than anything: kept, as we cannot tell.
    const createdAt = r.createdAt === undefined ? i.unknownAge.getTime() : Date.parse(r.createdAt);
    if (createdAt < i.olderThan.getTime()) out.remove.push(r);
    else out.spared++;
  }
  return out;
}
