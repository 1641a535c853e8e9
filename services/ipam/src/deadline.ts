import type { RpcContext } from '@weave/bus';
import { describeError, UnavailableError } from '@weave/errors';
import type { Logger } from '@weave/log';

/**
 * A reply sent this close to the caller's deadline may arrive after the caller gave up, and is
 * then as good as lost. Caller and service share a host, so this covers only the trip back.
 */
export const REPLY_MARGIN_MS = 100;

export interface DeadlineDeps {
  now: () => Date;
  log: Logger;
}

/**
 * Runs a request that takes something (a pool reference, a lease) for a caller that may stop
 * waiting. Docker, told of a timeout by plugin-api, retries, and the retry must find things as
 * they were: so a request already past its deadline when its turn comes does nothing, and one
 * that finishes past it gives back what it took and says so. No deadline: it just runs.
 */
export async function undoneIfLate<T>(
  d: DeadlineDeps,
  ctx: RpcContext,
  what: string,
  run: () => Promise<T>,
  undo: (taken: T) => Promise<void>,
): Promise<T> {
  const { deadline } = ctx;
  if (deadline === null) return run();
  const gaveUp = `its caller gave up waiting at ${new Date(deadline).toISOString()}`;
  if (overdue(d, deadline)) throw new UnavailableError(`${what}: ${gaveUp}, before its turn came; nothing was done`);
  const taken = await run();
  if (!overdue(d, deadline)) return taken;
  const lateMs = d.now().getTime() - deadline;
  try {
    await undo(taken);
  } catch (err) {
    d.log.error({ err, what, lateMs }, `${what} finished after ${gaveUp}, and undoing it failed: ${describeError(err)}`);
    throw new UnavailableError(`${what} finished after ${gaveUp}, and undoing it failed`, { cause: err });
  }
  d.log.warn({ what, lateMs }, `${what} finished after ${gaveUp}; undone`);
  throw new UnavailableError(`${what} finished after ${gaveUp}; what it took was given back, so a retry starts clean`);
}

/** Past the deadline, or so close to it that the reply would arrive after it. */
const overdue = (d: DeadlineDeps, deadline: number): boolean => d.now().getTime() >= deadline - REPLY_MARGIN_MS;
