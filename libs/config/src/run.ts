import type { NatsConnection } from '@nats-io/nats-core';
import { connectBus } from '@weave/bus';
import type { ServiceName } from '@weave/contracts';
import { describeError } from '@weave/errors';
import { createLogger, Logger } from '@weave/log';
import { z } from 'zod';
import { CommonEnv, readEnv } from './env';

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
  try {
    env = readEnv(CommonEnv.extend(envSchema.shape)) as z.output<T> & CommonEnv;
  } catch (e) {
    bootLog.fatal(describeError(e));
    process.exit(2);
  }
  const log = createLogger(service, env.WEAVE_HOST);
  const nc = await connectBus({
    servers: env.WEAVE_NATS_URL.split(','),
    name: `${service}@${env.WEAVE_HOST}`,
    log,
    user: env.WEAVE_NATS_USER,
    pass: env.WEAVE_NATS_PASSWORD,
  });
  let stop: () => Promise<void>;
  try {
    stop = await start({ env, log, nc });
  } catch (e) {
    log.fatal({ err: e }, `${service} failed to start: ${describeError(e)}`);
    await nc.close();
    process.exit(1);
  }
  log.info('started');
  const shutdown = async (signal: string): Promise<void> => {
    log.info({ signal }, 'stopping');
    try {
      await stop();
      await nc.drain();
    } catch (e) {
      log.error({ err: e }, `unclean stop: ${describeError(e)}`);
    }
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}
