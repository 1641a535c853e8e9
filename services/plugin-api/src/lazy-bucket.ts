import { KV, KvMirror, mirrorKv } from '@weave/bus';
import type { Logger } from '@weave/log';
import type { z } from 'zod';

/**
 * A KV bucket and a mirror of (some of) its keys, opened on first use and again after a failed
 * opening: the plugin's socket must not wait for JetStream, and a JetStream without quorum at
 * start must not leave the bucket unusable once it has one.
 */
export class LazyBucket<T> {
  private opened: Promise<{ kv: KV; mirror: KvMirror<T> }> | null = null;

  constructor(
    private readonly open: () => Promise<KV>,
    private readonly schema: z.ZodType<T>,
    private readonly o: { log: Logger; filter?: string },
  ) {}

  get(): Promise<{ kv: KV; mirror: KvMirror<T> }> {
    this.opened ??= this.open().then(
      (kv) => ({ kv, mirror: mirrorKv(kv, this.schema, this.o) }),
      (err: unknown) => {
        this.opened = null;
        throw err;
      },
    );
    return this.opened;
  }

  async stop(): Promise<void> {
    const b = await this.opened?.catch(() => null);
    await b?.mirror.stop();
  }
}
