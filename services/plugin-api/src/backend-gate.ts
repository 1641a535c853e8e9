import type { RpcClient } from '@weave/bus';
import type { RpcService } from '@weave/contracts';
import type { Logger } from '@weave/log';
import { waitFor } from '@weave/sync';

/**
 * Holds Docker's calls while ipam and netwire are not answering yet, instead of keeping the
 * plugin socket closed. When dockerd restarts, it starts weave's stack and the containers with a
 * restart policy at the same moment, and it looks for the plugin's socket for only 15 s before
 * failing a container for good ("plugin not found"); NATS, ipam and netwire can take longer than
 * that to be ready. So the socket opens as soon as the process runs, the handshake is answered at
 * once (it needs no backend), and each call that needs a backend waits for them, up to a bound,
 * then goes ahead and fails with the backend's own error if they are still away.
 */
export class BackendGate {
  private up = false;
  /** The wait in progress, shared by every call that arrives during it. */
  private waiting: Promise<void> | null = null;

  constructor(
    private readonly probes: Array<() => Promise<unknown>>,
    private readonly waitMs: number,
    private readonly log: Logger,
  ) {}

  /** Resolves once every probe answers, or after the bound; never rejects. */
  open(): Promise<void> {
    if (this.up) return Promise.resolve();
    this.waiting ??= this.wait().finally(() => (this.waiting = null));
    return this.waiting;
  }

  private async wait(): Promise<void> {
    const t0 = Date.now();
    this.up = await waitFor(() => Promise.all(this.probes.map((p) => p())).then(() => true), { what: 'ipam and netwire', timeoutMs: this.waitMs, intervalMs: 200 }).then(
      () => true,
      () => false,
    );
    if (this.up) this.log.info({ waitedMs: Date.now() - t0 }, 'ipam and netwire answer');
    else this.log.warn({ waitedMs: this.waitMs }, 'ipam or netwire still not answering; letting the call through to fail with their error');
  }

  /** `client` with every method waiting for the gate first. */
  guard<S extends RpcService>(client: RpcClient<S>): RpcClient<S> {
    return Object.fromEntries(
      Object.entries(client).map(([name, call]) => [name, async (req: unknown) => (await this.open(), (call as (r: unknown) => Promise<unknown>)(req))]),
    ) as RpcClient<S>;
  }
}
