import { headers, NatsConnection, RequestError, TimeoutError } from '@nats-io/nats-core';
import { ReqOf, ResOf, RpcHeaders, RpcReply, RpcService, Subjects } from '@weave/contracts';
import { errorFromCode, InternalError, UnavailableError } from '@weave/errors';
import { z } from 'zod';
import { decodeJson, encodeJson } from './json';

export type RpcClient<S extends RpcService> = {
  [M in keyof S['methods'] & string]: (req: ReqOf<S, M>) => Promise<ResOf<S, M>>;
};

export interface RpcClientOptions {
  /** How long one call may take. Kernel and KV work is fast; this bounds a wedged service. */
  timeoutMs?: number;
}

/**
 * A typed client for one service on one host. The request is validated before it is sent (a bug
 * here should not reach the service), the reply after. Failures come back as WeaveErrors with
 * the code the service chose, or UnavailableError when nobody answered. Each request carries the
 * moment this client stops waiting, so the service can tell a reply that nobody will read.
 */
export function rpcClient<S extends RpcService>(nc: NatsConnection, host: string, def: S, o: RpcClientOptions = {}): RpcClient<S> {
  const timeout = o.timeoutMs ?? 10_000;
  const client: Record<string, (req: unknown) => Promise<unknown>> = {};
  for (const [method, spec] of Object.entries(def.methods)) {
    const subject = Subjects.rpc(host, def.service, method);
    client[method] = async (req) => {
      const body = spec.req.parse(req);
      const h = headers();
      h.set(RpcHeaders.deadline, String(Date.now() + timeout));
      let data: Uint8Array;
      try {
        data = (await nc.request(subject, encodeJson(body), { timeout, headers: h })).data;
      } catch (e) {
        throw unavailable(e, def.service, host, method, timeout);
      }
      const reply = RpcReply.parse(decodeJson(data));
      if (!reply.ok) throw errorFromCode(reply.error.code, reply.error.message);
      const res = spec.res.safeParse(reply.result);
      if (!res.success) throw new InternalError(`${def.service}.${method} on ${host} replied with an invalid result: ${z.prettifyError(res.error)}`);
      return res.data;
    };
  }
  return client as RpcClient<S>;
}

function unavailable(e: unknown, service: string, host: string, method: string, timeout: number): Error {
  if (e instanceof RequestError && e.isNoResponders()) {
    return new UnavailableError(`the ${service} service on host ${host} is not running (no responder for ${method})`, { cause: e });
  }
  if (e instanceof TimeoutError || (e instanceof Error && e.cause instanceof TimeoutError)) {
    return new UnavailableError(`the ${service} service on host ${host} did not answer ${method} within ${timeout} ms`, { cause: e });
  }
  return new UnavailableError(`cannot reach the ${service} service on host ${host} over NATS`, { cause: e });
}
