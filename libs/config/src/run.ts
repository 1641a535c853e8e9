import { AuthorizationError, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { connectBus } from '@weave/bus';
import type { ServiceName } from '@weave/contracts';
import { describeError } from '@weave/errors';
import { createLogger, Logger } from '@weave/log';
import { z } from 'zod';
import { CommonEnv, natsAuth, readEnv } from './env';

export interface ServiceContext<E> {
  env: E;
  log: Logger;
  nc: NatsConnection;
}

/**
 * The whole life of a service process: read and validate its environment, connect to NATS,
 * start, and on SIGTERM/SIGINT stop in reverse and drain. Entry points call this and nothing else.
 */
export async function runService<T extends z.ZodObject>(
  service: ServiceName,
  envSchema: T,
  start: (ctx: ServiceContext<z.output<T> & CommonEnv>) => Promise<() => Promise<void>>,
): Promise<void> {
  const bootLog = createLogger(service, process.env.WEAVE_HOST ?? '?');
  let env: z.output<T> & CommonEnv;
  let auth: NatsAuth;
  try {
    env = readEnv(CommonEnv.extend(envSchema.shape)) as z.output<T> & CommonEnv;
    auth = natsAuth(env);
  } catch (e) {
    bootLog.fatal(describeError(e));
    process.exit(2);
  }
  const log = createLogger(service, env.WEAVE_HOST);
  // Signals are handled from here on, not only once started: a stop that lands while the service
  // starts (compose down right after up) must still close what start opened (plugin-api's socket
  // file, for one), so it waits for start to finish and then stops.
  let phase: 'connecting' | 'starting' | 'running' | 'stopping' = 'connecting';
  let pending: string | null = null;
  let stop: () => Promise<void> = async () => {};
  let nc: Awaited<ReturnType<typeof connectBus>> | null = null;
  const shutdown = async (signal: string): Promise<void> => {
    phase = 'stopping';
    log.info({ signal }, 'stopping');
    try {
      await stop();
      await nc?.drain();
    } catch (e) {
      log.error({ err: e }, `unclean stop: ${describeError(e)}`);
    }
    process.exit(0);
  };
  const onSignal = (signal: string): void => {
    if (phase === 'connecting') {
      log.info({ signal }, 'stopping before NATS was reached: nothing to close');
      process.exit(0);
    }
    if (phase === 'starting') {
      pending ??= signal;
      // A start that cannot finish (JetStream without a quorum, say) must not hold the stop until
      // the runtime kills the process: exit then, which still runs 'exit' handlers.
      setTimeout(() => {
        log.warn({ signal }, 'still starting 3 s after the signal: exiting without a full stop');
        process.exit(0);
      }, 3000).unref();
      return;
    }
    if (phase === 'running') void shutdown(signal);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  const servers = env.WEAVE_NATS_URL.split(',');
  const credsFile = env.WEAVE_NATS_CREDS_FILE;
  nc = await whileWaiting(connectBus({ servers, name: `${service}@${env.WEAVE_HOST}`, log, ...auth }), async () => {
    log.warn({ servers }, `not connected to NATS yet: ${await whyNoNats(servers, auth, credsFile)}`);
  }).catch((e: unknown) => {
    // connectBus waits out an absent server, but not a refusal: that needs a person.
    log.fatal({ err: e, servers }, `cannot connect to NATS: ${natsFailure(e, credsFile)}`);
    process.exit(1);
  });
  phase = 'starting';
  try {
    stop = await start({ env, log, nc });
  } catch (e) {
    log.fatal({ err: e }, `${service} failed to start: ${describeError(e)}`);
    await nc.close();
    process.exit(1);
  }
  phase = 'running';
  log.info('started');
  if (pending) await shutdown(pending);
}

type NatsAuth = ReturnType<typeof natsAuth>;

/**
 * Runs `report` every 10 s (first after 10 s) until `p` settles: connectBus waits for NATS for
 * ever and silently, which would leave a service that is refused its credentials looking hung.
 */
async function whileWaiting<V>(p: Promise<V>, report: () => Promise<void>, everyMs = 10_000): Promise<V> {
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    timer = setTimeout(() => void report().finally(tick), everyMs);
  };
  tick();
  try {
    return await p;
  } finally {
    clearTimeout(timer);
  }
}

/** One plain connection attempt, to say why connectBus is still waiting. */
async function whyNoNats(servers: string[], auth: NatsAuth, credsFile: string | undefined): Promise<string> {
  try {
    const nc = await connect({ servers, ...auth, maxReconnectAttempts: 0, timeout: 2000 });
    await nc.close();
    return 'it answers now';
  } catch (e) {
    return natsFailure(e, credsFile);
  }
}

/** What a failed connection means, and what to do about it. */
function natsFailure(e: unknown, credsFile: string | undefined): string {
  if (!(e instanceof AuthorizationError)) return `${describeError(e)} (is nats-server up?)`;
  return credsFile
    ? `nats-server refuses the credentials in ${credsFile}: it was started with others (was the file remade?); restart it: docker compose -f compose/host.yml restart nats`
    : 'nats-server wants credentials: set WEAVE_NATS_CREDS_FILE (compose/host.yml sets it)';
}
