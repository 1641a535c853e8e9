import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { HostName } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { z } from 'zod';
import { readNatsCredentials } from './secrets';

/**
 * Reads environment variables through a zod schema. A bad value stops the service at start with
 * every problem listed by variable name, instead of failing later on first use.
 */
export function readEnv<T extends z.ZodObject>(schema: T, env: NodeJS.ProcessEnv = process.env): z.output<T> {
  // Compose passes `${VAR:-}` through as an empty string: treat it as unset so defaults apply.
  const set = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = schema.safeParse(set);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new InvalidRequestError(`bad environment:\n${lines.join('\n')}`);
  }
  return r.data;
}

/** A stable host identity: the machine id if there is one, else the hostname, made subject-safe. */
export function defaultHostName(): string {
  for (const f of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const id = readFileSync(f, 'utf8').trim();
      if (/^[0-9a-f]{32}$/.test(id)) return id.slice(0, 12);
    } catch {
      // not there: try the next source
    }
  }
  return hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64) || 'weave';
}

/** Variables every service reads. */
export const CommonEnv = z.object({
  WEAVE_HOST: HostName.default(() => defaultHostName()),
  WEAVE_NATS_URL: z.string().min(1).default('nats://127.0.0.1:4222'),
  /**
   * The JSON file with the local nats-server's client credentials (compose/host.yml mounts it
   * read-only). Unset: connect without authentication (the test harnesses' servers).
   */
  WEAVE_NATS_CREDS_FILE: z.string().startsWith('/', 'must be an absolute path').optional(),
  /**
   * Copies of each KV bucket in a NATS cluster. Whoever creates a bucket first fixes it (opening
   * it later with another count silently keeps the first), so every host must use one value.
   */
  WEAVE_KV_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
});
export type CommonEnv = z.output<typeof CommonEnv>;

/**
 * The user and password to connect to NATS with, read from WEAVE_NATS_CREDS_FILE now (so a bad
 * file stops the process at start with the fix in the message); none when it is unset.
 */
export function natsAuth(env: Pick<CommonEnv, 'WEAVE_NATS_CREDS_FILE'>): { user?: string; pass?: string } {
  if (!env.WEAVE_NATS_CREDS_FILE) return {};
  const c = readNatsCredentials(env.WEAVE_NATS_CREDS_FILE);
  return { user: c.user, pass: c.password };
}
