import { createHmac, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, statSync, chmodSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidRequestError } from '@weave/errors';
import { z } from 'zod';

/**
 * The secrets of one host's install, in one directory only root can enter (compose/host.yml's
 * WEAVE_SECRETS_DIR). The `secrets` service of compose/host.yml makes the client credentials there
 * at install; the cluster secret is the operator's, the same file on every host of a mesh.
 */
export const DEFAULT_SECRETS_DIR = '/var/lib/weave';
export const NATS_CLIENT_SECRET_FILE = 'nats-client.secret';
export const CLUSTER_SECRET_FILE = 'cluster.secret';

/** How to make a cluster secret; part of every error about a missing or unusable one. */
export function makeClusterSecretHint(dir = DEFAULT_SECRETS_DIR): string {
  return (
    `make one on one host with \`(umask 077; openssl rand -hex 32 > ${join(dir, CLUSTER_SECRET_FILE)})\`, copy that file (mode 0600) to the same ` +
    'place on every host of the mesh, and run compose up again (or pass the same WEAVE_CLUSTER_SECRET=<it> to docker compose on every host)'
  );
}

/**
 * What goes into nats-server's configuration must need no quoting anywhere it is used (a config
 * string, a route URL's userinfo), so secrets are restricted to URL-safe characters.
 */
const Token = z.string().regex(/^[A-Za-z0-9._~-]+$/, 'only letters, digits and . _ ~ -');

/** The credentials clients of the local nats-server present (a JSON file). */
export const NatsCredentials = z.strictObject({
  user: Token.max(64),
  password: Token.min(32, 'at least 32 characters').max(256),
});
export type NatsCredentials = z.output<typeof NatsCredentials>;

export const ClusterSecret = z
  .string()
  .trim()
  .min(32, 'at least 32 characters')
  .max(1024)
  .regex(/^\S+$/, 'one word, no spaces');

export class SecretFileError extends InvalidRequestError {}

/** A fresh client password: 256 bits, never leaves the host (clients talk to NATS on loopback). */
export function generateNatsCredentials(): NatsCredentials {
  return { user: 'weave', password: randomBytes(32).toString('hex') };
}

/**
 * Reads and checks a secret file: a regular file that only its owner can read (as ssh insists for
 * private keys: a copy readable by others is a leaked secret, better refused than used).
 */
export function readSecretFile(path: string, what: string): string {
  let text: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new SecretFileError(`${what} ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new SecretFileError(`${what} ${path} can be read by others than its owner (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 ${path}`);
    }
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof SecretFileError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SecretFileError(`${what} ${path} does not exist`, { cause: e });
    if (code === 'EACCES') throw new SecretFileError(`${what} ${path} is not readable by uid ${process.getuid?.()}: it is root's; run as root`, { cause: e });
    throw new SecretFileError(`${what} ${path} cannot be read`, { cause: e });
  }
  return text;
}

/** The client credentials in `path`; every way it can be wrong says how to put it right. */
export function readNatsCredentials(path: string): NatsCredentials {
  let text: string;
  try {
    text = readSecretFile(path, 'NATS credentials file');
  } catch (e) {
    if ((e as { cause?: NodeJS.ErrnoException }).cause?.code !== 'ENOENT') throw e;
    throw new SecretFileError(
      `NATS credentials file ${path} does not exist: \`docker compose -f compose/host.yml up -d\` makes it (its \`secrets\` service); ` +
        'or leave WEAVE_NATS_CREDS_FILE unset for a nats-server without authentication',
      { cause: (e as Error).cause },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SecretFileError(`NATS credentials file ${path} is not JSON: ${remakeHint()}`, { cause: e });
  }
  const r = NatsCredentials.safeParse(json);
  if (!r.success) throw new SecretFileError(`NATS credentials file ${path} is malformed (${z.prettifyError(r.error).replace(/\n/g, ' ')}): ${remakeHint()}`);
  return r.data;
}

function remakeHint(): string {
  return `remove it and run \`docker compose -f compose/host.yml up -d --force-recreate\` to make a new one (or write {"user":…,"password":…} there)`;
}

/**
 * Makes the secrets directory root's alone (Docker creates a missing bind-mount source 0755) and
 * the client credentials in it unless they exist: an existing file is never replaced, because the
 * running nats-server and services hold what it says. Returns them, checked.
 */
export function ensureNatsCredentials(dir: string): NatsCredentials {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new SecretFileError(`secrets directory ${dir} is not a directory`);
  if (st.uid !== process.getuid?.()) throw new SecretFileError(`secrets directory ${dir} belongs to uid ${st.uid}, not to this process's uid ${process.getuid?.()}: chown root:root ${dir}`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  const file = join(dir, NATS_CLIENT_SECRET_FILE);
  createExclusive(file, JSON.stringify(generateNatsCredentials()) + '\n');
  return readNatsCredentials(file);
}

/**
 * Writes `content` to `path` only if `path` does not exist, and all of it or nothing: written to a
 * private temporary file first, then linked into place (link fails if the name exists), so two
 * installs at once, or a crash half-way, never leave a short or replaced secret.
 */
function createExclusive(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * The mesh's shared secret: WEAVE_CLUSTER_SECRET, or the file cluster.secret in the secrets
 * directory; null when there is neither. Both at once must agree, or a host could use a stale one.
 */
export function readClusterSecret(o: { env?: string; dir: string }): string | null {
  return readSharedSecret({ ...o, variable: 'WEAVE_CLUSTER_SECRET', file: CLUSTER_SECRET_FILE, what: 'cluster secret', schema: ClusterSecret, hint: makeClusterSecretHint(o.dir) });
}

export const MESH_PASSWORD_FILE = 'password';

/** The password that encrypts the routers' traffic: any text up to 1024 bytes, no edge spaces. */
export const MeshPassword = z
  .string()
  .trim()
  .min(1, 'empty')
  .refine((s) => Buffer.byteLength(s) <= 1024, 'longer than 1024 bytes');

/**
 * The password every router of an encrypted mesh shares: WEAVE_PASSWORD, or the file `password`
 * in the secrets directory (better: a variable shows in `docker inspect`); null when there is
 * neither, and the mesh is not encrypted. Both at once must agree.
 */
export function readMeshPassword(o: { env?: string; dir: string }): string | null {
  const hint = `put the same password on every host, in ${join(o.dir, MESH_PASSWORD_FILE)} (mode 0600) or WEAVE_PASSWORD`;
  return readSharedSecret({ ...o, variable: 'WEAVE_PASSWORD', file: MESH_PASSWORD_FILE, what: 'mesh password', schema: MeshPassword, hint });
}

/** Where the services that need the mesh password (router, netwire) find it. */
export const MeshPasswordEnv = z.object({
  WEAVE_SECRETS_DIR: z.string().startsWith('/', 'must be an absolute path').default(DEFAULT_SECRETS_DIR),
  WEAVE_PASSWORD: z.string().optional(),
});

/** The mesh password these variables name, or null for an unencrypted mesh. */
export const meshPasswordOf = (env: z.output<typeof MeshPasswordEnv>): string | null => readMeshPassword({ env: env.WEAVE_PASSWORD, dir: env.WEAVE_SECRETS_DIR });

/** A secret the hosts of a mesh share, from a variable or a file in the secrets directory. */
function readSharedSecret(o: { env?: string; dir: string; variable: string; file: string; what: string; schema: z.ZodType<string>; hint: string }): string | null {
  const file = join(o.dir, o.file);
  let fromFile: string | null = null;
  try {
    fromFile = readSecretFile(file, `${o.what} file`);
  } catch (e) {
    if ((e as { cause?: NodeJS.ErrnoException }).cause?.code !== 'ENOENT') throw e;
  }
  // The messages never echo the value: it is a secret even when it is unusable.
  const parse = (v: string, where: string): string => {
    const r = o.schema.safeParse(v);
    if (!r.success) throw new SecretFileError(`the ${o.what} in ${where} is not usable (${r.error.issues.map((i) => i.message).join('; ')}): ${o.hint}`);
    return r.data;
  };
  const env = o.env === undefined || o.env === '' ? null : parse(o.env, o.variable);
  const inFile = fromFile === null ? null : parse(fromFile, file);
  if (env !== null && inFile !== null && env !== inFile) throw new SecretFileError(`${o.variable} and ${file} differ: keep one of them (the same on every host)`);
  return env ?? inFile;
}

/**
 * The credentials nats-servers of one mesh present to each other's cluster port, derived from the
 * shared secret (HMAC-SHA256 with a fixed label) rather than the secret itself: they appear in
 * route URLs and cross the underlay, and the operator's secret may key other things later.
 */
export function routeCredentials(secret: string): NatsCredentials {
  return { user: 'weave-route', password: createHmac('sha256', secret).update('weave nats cluster routes v1').digest('hex') };
}
