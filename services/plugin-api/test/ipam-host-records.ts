import type { HostRecord } from '@weave/contracts';

/** ipam's record of a host live at `epoch`, as its renewals keep it. */
export const liveHost = (epoch: number, renewedAt = new Date()): HostRecord => ({ state: 'live', epoch, renewedAt: renewedAt.toISOString() });

/** ipam's record of a host `by` reclaimed at `epoch` (it was live at epoch - 1), once the reclaim is done. */
export const reclaimedHost = (epoch: number, by: string, at = new Date()): HostRecord => ({
  state: 'reclaimed',
  epoch,
  renewedAt: new Date(at.getTime() - 6000).toISOString(),
  reclaimedBy: by,
  reclaimedAt: at.toISOString(),
  done: true,
  pools: [],
});
