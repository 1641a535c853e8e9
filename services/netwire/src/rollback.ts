import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';

/**
 * Record-and-undo for multi-step kernel changes, as containernetworking/plugins' cmdAdd does:
 * each step that changed something registers how to take it back, and if a later step fails
 * the undos run newest first. An undo that fails is logged and the others still run; the
 * caller rethrows the original failure, which is what the user needs to see.
 */
export class Rollback {
  private readonly undos: Array<{ what: string; fn: () => Promise<unknown> }> = [];

  constructor(private readonly log: Logger) {}

  push(what: string, fn: () => Promise<unknown>): void {
    this.undos.push({ what, fn });
  }

  async run(): Promise<void> {
    for (const u of this.undos.splice(0).reverse()) {
      try {
        await u.fn();
      } catch (err) {
        this.log.error({ err, undo: u.what }, `rollback step failed, leaving it for reconcile: ${describeError(err)}`);
      }
    }
  }
}

/** Runs `body`; if it throws, undoes what it registered and rethrows. */
export async function withRollback<T>(log: Logger, body: (rb: Rollback) => Promise<T>): Promise<T> {
  const rb = new Rollback(log);
  try {
    return await body(rb);
  } catch (e) {
    await rb.run();
    throw e;
  }
}
