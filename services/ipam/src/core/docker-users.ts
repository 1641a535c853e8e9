import type { DockerPoolView } from '@weave/contracts';
import { Cidr, formatCidr, overlaps, parseCidr, sameCidr } from '@weave/netaddr';
import { PoolSpec } from './keys';
import { heldBy, PoolRecord } from './records';

/**
 * Who a pool this host holds belongs to, from Docker's list of its networks (DockerPoolView):
 * Docker names no network in RequestPool or ReleasePool, so this is how ipam tells them apart.
 * No I/O, so every case is a table test.
 *
 * Two facts about Docker make the list decide it. Docker asks for a network's pool before it
 * stores the network, and leaves a network it is removing out of its list (libnetwork's
 * `Networks()` skips those marked for deletion); and it never asks again for the pool of a
 * network it has, not even when dockerd restarts, because this IPAM does not ask for replays
 * (`RequiresRequestReplay: false`). So a RequestPool is always for a network Docker does not
 * list, and the ReleasePool of a removal or a rollback is for one it does not list either.
 */
export interface DockerContext {
  view: DockerPoolView;
  /** When a reference without a time (`since`, absent in older records) counts as taken: this process's start. */
  unknownAge: Date;
}

export interface DockerNetworkRef {
  id: string;
  name: string;
}

/** Docker's networks on this host whose subnets include `pool` exactly. */
export function networksUsing(view: DockerPoolView, pool: Cidr): DockerNetworkRef[] {
  return view.networks.filter((n) => n.subnets.some((s) => sameCidr(parseCidr(s), pool))).map(({ id, name }) => ({ id, name }));
}

/** Docker's networks on this host with a subnet overlapping `pool`, for naming them in a refusal. */
export function networksOverlapping(view: DockerPoolView, pool: Cidr): DockerNetworkRef[] {
  return view.networks.filter((n) => n.subnets.some((s) => overlaps(parseCidr(s), pool))).map(({ id, name }) => ({ id, name }));
}

export type HeldVerdict =
  /** A leftover of the same range: the request gets this reference (no second one). */
  | { kind: 'adopt' }
  /** A leftover of another ip-range: released first, then the request joins afresh. */
  | { kind: 'replace' }
  | { kind: 'refuse'; reason: string };

/**
 * A RequestPool for a subnet this host holds already. Docker lists the network that holds it:
 * a second network asks, refused as Docker's own IPAM refuses a subnet twice on one host. Docker
 * lists none: the reference is a leftover of a network create that never completed (its reply was
 * lost, plugin-api or ipam died, Docker rolled back while ipam could not hear it), and this
 * request is that create asked again (a user's retry, the catalogue's next pass): it gets the same
 * PoolID, and the reference stays one, so the network's one ReleasePool balances it. Unless the
 * reference is younger than `olderThan`: then another create may be in flight for it, between
 * its RequestPool and Docker storing the network, and sharing one reference between two networks
 * would let the first one removed tear the pool down under the other; refused, saying when to
 * try again. (Without Docker's list nothing can be told apart: decideJoin refuses.)
 */
export function heldVerdict(record: PoolRecord, host: string, spec: PoolSpec, docker: DockerContext): HeldVerdict {
  const pool = formatCidr(spec.pool);
  const users = networksUsing(docker.view, spec.pool);
  if (users.length > 0) return { kind: 'refuse', reason: `subnet ${pool} is already used by network ${describeNetworks(users)} on this host (${host})` };
  const since = record.since?.[host];
  const takenAt = since === undefined ? docker.unknownAge.getTime() : Date.parse(since);
  const olderThan = Date.parse(docker.view.olderThan);
  if (!(takenAt < olderThan)) {
    const wait = Number.isFinite(takenAt) ? ` in ${Math.max(1, Math.ceil((takenAt - olderThan) / 1000))} s` : ' later';
    return {
      kind: 'refuse',
      reason: `subnet ${pool} was taken moments ago by a network being created on this host (${host}), which Docker does not list yet; if that create failed, try again${wait}`,
    };
  }
  const subPool = spec.subPool && formatCidr(spec.subPool);
  return record.subPool === subPool ? { kind: 'adopt' } : { kind: 'replace' };
}

/**
 * A ReleasePool while Docker still lists a network on this host with the pool's subnet: it is not
 * that network's (a removal's network is no longer listed, a rollback's never was), so this
 * host's reference, which that network relies on, is kept. Null: release as asked.
 */
export function keptFor(record: PoolRecord | null, host: string, docker: DockerPoolView | null | undefined): DockerNetworkRef[] | null {
  if (!docker || !record || heldBy(record, host) === 0) return null;
  const users = networksUsing(docker, parseCidr(record.pool));
  return users.length > 0 ? users : null;
}

export const describeNetworks = (networks: readonly DockerNetworkRef[]): string => networks.map((n) => `${n.name} (${n.id.slice(0, 12)})`).join(', ');
