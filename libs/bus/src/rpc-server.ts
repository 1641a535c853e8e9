import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { DeadlineHeader, ResOf, RpcHeaders, RpcService, Subjects } from '@weave/contracts';
import { asWeaveError, describeError, InternalError, InvalidRequestError, WeaveError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';
import { decodeJson, encodeJson } from './json';

/** What a handler knows of the call besides its request. */
export interface RpcContext {
  /** When the caller stops waiting, in ms since the epoch; null when it did not say (an older caller). */
  readonly deadline: number | null;
}

export const NO_DEADLINE: RpcContext = { deadline: null };

export type RpcHandlers<S extends RpcService> = {
  [M in keyof S['methods'] & string]: (req: z.output<S['methods'][M]['req']>, ctx: RpcContext) => Promise<ResOf<S, M>>;
};

/**
 * Serves `weave.rpc.<host>.<service>.*`. Each request is validated before its handler runs and
 * each reply after, so neither side ever sees a payload its schema does not allow. Requests run
 * concurrently; handlers that need ordering serialise themselves.
 */
export function serveRpc<S extends RpcService>(
  nc: NatsConnection,
  host: string,
  def: S,
  handlers: RpcHandlers<S>,
  log: Logger,
): Subscription {
  const methods = def.methods as Record<string, S['methods'][string]>;
  const prefix = Subjects.rpc(host, def.service, '');
  return nc.subscribe(Subjects.rpcAll(host, def.service), {
    queue: `${def.service}.${host}`,
    callback: (err, msg) => {
      if (err) return log.error({ err }, 'rpc subscription failed');
      void handle(msg);
    },
  });

  async function handle(msg: Msg): Promise<void> {
    const method = msg.subject.slice(prefix.length);
    const started = performance.now();
    try {
      // Own methods only: a subject token such as `constructor` must not find Object's.
      const spec = Object.hasOwn(methods, method) ? methods[method] : undefined;
      if (!spec) throw new InvalidRequestError(`${def.service} has no method ${JSON.stringify(method)}`);
      const req = spec.req.safeParse(decodeJson(msg.data));
      if (!req.success) throw new InvalidRequestError(`bad ${def.service}.${method} request: ${z.prettifyError(req.error)}`);
      const ctx: RpcContext = { deadline: deadlineOf(msg) };
      const result = await (handlers as Record<string, (r: unknown, c: RpcContext) => Promise<unknown>>)[method]!(req.data, ctx);
      const res = spec.res.safeParse(result);
      if (!res.success) throw new InternalError(`${def.service}.${method} produced an invalid reply: ${z.prettifyError(res.error)}`);
      reply(msg, { ok: true, result: res.data });
      log.debug({ method, ms: Math.round(performance.now() - started) }, 'rpc ok');
    } catch (e) {
      const err: WeaveError = asWeaveError(e);
      const level = err.code === 'internal' ? 'error' : 'warn';
      log[level]({ method, code: err.code, err: e }, `rpc ${def.service}.${method} failed: ${describeError(err)}`);
      try {
        reply(msg, { ok: false, error: { code: err.code, message: clip(describeError(err)) } });
      } catch (sendErr) {
        // Nothing may escape: an unhandled rejection would end the process.
        log.error({ method, err: sendErr }, `rpc ${def.service}.${method}: could not send the error reply: ${describeError(sendErr)}`);
      }
    }
  }

  function reply(msg: Msg, body: unknown): void {
    if (msg.reply) msg.respond(encodeJson(body));
  }
}

/**
 * Messages can quote the request (a pool id that is not one, a key no schema knows), and a
 * request of nearly NATS's max_payload quoted with JSON escapes would make a reply too large to
 * send. What the caller needs to read fits in far less.
 */
const MAX_MESSAGE_CHARS = 4096;

const clip = (m: string): string => (m.length <= MAX_MESSAGE_CHARS ? m : `${m.slice(0, MAX_MESSAGE_CHARS)}… (${m.length} characters in all)`);

/** The caller's deadline header, validated: absent is no deadline, malformed is a bad request. */
function deadlineOf(msg: Msg): number | null {
  const raw = msg.headers?.get(RpcHeaders.deadline) ?? '';
  if (raw === '') return null;
  const d = DeadlineHeader.safeParse(raw);
  if (!d.success) throw new InvalidRequestError(`bad ${RpcHeaders.deadline} header ${JSON.stringify(raw)}: ${z.prettifyError(d.error)}`);
  return d.data;
}
