import type { LeaseRecord } from './records';

/**
 * Whether this host still holds the address one of its containers uses (see checkLeases): an
 * endpoint lease of its own; any other lease (another host's container, or the network's
 * gateway or aux address) means the address is live elsewhere; no lease at all, nobody's yet.
 */
export type Holding = { state: 'held' } | { state: 'taken'; by: string } | { state: 'free' };

export function holdingOf(lease: LeaseRecord | null | undefined, host: string): Holding {
  if (!lease) return { state: 'free' };
  if (lease.host === host && lease.kind === 'endpoint') return { state: 'held' };
  return { state: 'taken', by: lease.host };
}
