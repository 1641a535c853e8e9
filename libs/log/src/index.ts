import pino, { Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * pino JSON to stdout, with the service and host on every line so logs from several hosts can
 * be merged. Level from WEAVE_LOG_LEVEL (default info).
 */
export function createLogger(service: string, host: string, level = process.env.WEAVE_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { service, host, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/** A logger that writes nothing, for tests that do not look at logs. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
