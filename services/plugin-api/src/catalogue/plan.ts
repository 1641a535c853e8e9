import type { CatalogueEntry } from '@weave/contracts';

export type ActiveEntry = Extract<CatalogueEntry, { state: 'active' }>;
export type RemovedEntry = Extract<CatalogueEntry, { state: 'removed' }>;

/** A weave network as this host's Docker has it. */
export interface LocalNetwork {
  name: string;
  created: string;
  subnets: ActiveEntry['subnets'];
  ipv6: boolean;
  internal: boolean;
  options: Record<string, string>;
  labels: Record<string, string>;
  containers: number;
  /** For a network the catalogue made here: the `createdAt` of the entry it copies. */
  replicaOf: string | null;
}

/** The label on networks the catalogue creates, naming the catalogue entry they copy. */
export const REPLICA_LABEL = 'weave.catalogue.replica-of';

export type CatalogueAction =
  | { kind: 'publish'; entry: ActiveEntry; local: LocalNetwork }
  | { kind: 'createLocal'; entry: ActiveEntry }
  | { kind: 'removeLocal'; entry: RemovedEntry }
  | { kind: 'conflict'; name: string; reason: string };

/**
 * What this host must do so its Docker and the mesh-wide catalogue agree; no I/O, so every
 * decision is a table test. A network only here is published; one only in the catalogue is
 * created here; one the catalogue says was removed goes, unless it was made here after the
 * removal (a new network reusing the name) or still has containers (then it is reported).
 */
export function planCatalogue(host: string, local: readonly LocalNetwork[], catalogue: ReadonlyMap<string, CatalogueEntry>, now: Date): CatalogueAction[] {
  const actions: CatalogueAction[] = [];
  const here = new Set(local.map((l) => l.name));
  for (const l of local) {
    const c = catalogue.get(l.name);
    if (!c || (c.state === 'removed' && isNewerThan(l, c))) {
      actions.push({ kind: 'publish', entry: entryOf(host, l, now), local: l });
    } else if (c.state === 'removed') {
      actions.push(
        l.containers > 0
          ? { kind: 'conflict', name: l.name, reason: `removed by ${c.removedBy}, but ${l.containers} container(s) still use it on this host; it goes when they do` }
          : { kind: 'removeLocal', entry: c },
      );
    } else if (!sameShape(c, l)) {
      actions.push({ kind: 'conflict', name: l.name, reason: `this host has it as ${describe(l)}, the mesh as ${describe(c)} (created by ${c.createdBy}); remove one of them` });
    }
  }
  for (const c of catalogue.values()) if (c.state === 'active' && !here.has(c.name)) actions.push({ kind: 'createLocal', entry: c });
  return actions;
}

/**
 * Whether a network here was made after the name was removed, and so is a new network. A copy the
 * catalogue made never is: it copies an entry that is older than its tombstone by construction.
 */
export function isNewerThan(l: LocalNetwork, tombstone: RemovedEntry): boolean {
  return l.replicaOf === null && Date.parse(l.created) > Date.parse(tombstone.removedAt);
}

function entryOf(host: string, l: LocalNetwork, now: Date): ActiveEntry {
  const labels = Object.fromEntries(Object.entries(l.labels).filter(([k]) => k !== REPLICA_LABEL));
  return { state: 'active', name: l.name, subnets: l.subnets, ipv6: l.ipv6, internal: l.internal, options: l.options, labels, createdBy: host, createdAt: now.toISOString() };
}

/** Same subnets (gateways compared only where both sides know one) and the same isolation. */
function sameShape(c: ActiveEntry, l: LocalNetwork): boolean {
  if (c.internal !== l.internal || c.subnets.length !== l.subnets.length) return false;
  return c.subnets.every((s, i) => {
    const o = l.subnets[i]!;
    return s.subnet === o.subnet && s.ipRange === o.ipRange && (s.gateway === null || o.gateway === null || s.gateway === o.gateway);
  });
}

const describe = (n: { subnets: ActiveEntry['subnets']; internal: boolean }): string =>
  `${n.subnets.map((s) => s.subnet + (s.ipRange ? ` range ${s.ipRange}` : '')).join(', ')}${n.internal ? ' (internal)' : ''}`;
