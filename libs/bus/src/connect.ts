import { connect, NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '@weave/log';

export interface BusOptions {
  servers: string | string[];
  name: string;
  log: Logger;
  /** Credentials (user/pass) when the server asks for them. */
  user?: string;
  pass?: string;
}

/**
 * Connects to NATS and keeps reconnecting for ever: a service outlives NATS restarts rather than
 * dying with them. The first connect also waits, so start order does not matter.
 */
export async function connectBus(o: BusOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: o.servers,
    name: o.name,
    user: o.user,
    pass: o.pass,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') o.log.warn({ nats: s.type, server: 'server' in s ? s.server : undefined }, `nats ${s.type}`);
    }
  })();
  o.log.info({ server: nc.getServer() }, 'connected to nats');
  return nc;
}
