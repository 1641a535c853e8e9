import type { RmpeerResult } from '@weave/contracts';
import { ConflictError } from '@weave/errors';
import type { z } from 'zod';
import type { ReclaimOutcome } from './reclaimer';

/**
 * The rmpeer reply. A live host is refused (an error, not a result) so the operator sees that
 * nothing happened and what to do: the host may just be slow, and reclaiming a live host makes it
 * stand down and lose the guarantee on its containers' addresses.
 */
export function rmpeerReply(o: ReclaimOutcome): z.output<typeof RmpeerResult> {
  switch (o.kind) {
    case 'live':
      throw new ConflictError(`host ${o.host} is live (its lease runs ${Math.round(o.leftMs / 1000)} s more); if it is gone for good, pass --force`);
    case 'already':
      return { outcome: 'already', host: o.host, by: o.by, at: o.at };
    case 'reclaimed':
      return { outcome: 'reclaimed', host: o.host, epoch: o.epoch, blocks: o.blocks, addresses: o.addresses, pools: o.pools };
  }
}
