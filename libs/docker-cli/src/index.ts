import { execFile } from 'node:child_process';
import { request } from 'node:http';

/** A failed docker command, with what it printed: Docker's own message is what a person needs. */
export class DockerCliError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: ErrorOptions,
  ) {
    super(`docker ${args.join(' ')} failed (exit ${exitCode}): ${stderr.trim()}`, options);
    this.name = 'DockerCliError';
  }
}

export interface DockerOptions {
  /** DOCKER_HOST for another engine (a simulated host). */
  host?: string;
  timeoutMs?: number;
}

/** Runs the docker CLI and resolves with its trimmed stdout. */
export function docker(args: readonly string[], o: DockerOptions = {}): Promise<string> {
  const env = { ...process.env, ...(o.host ? { DOCKER_HOST: o.host } : {}) };
  return new Promise((resolve, reject) => {
    execFile('docker', args, { env, timeout: o.timeoutMs ?? 120_000, maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new DockerCliError(args, typeof err.code === 'number' ? err.code : null, stderr || err.message, { cause: err }));
      else resolve(stdout.trim());
    });
  });
}

/** Like docker(), but resolves with the error instead of throwing, for expected failures. */
export async function dockerResult(args: readonly string[], o: DockerOptions = {}): Promise<{ ok: true; out: string } | { ok: false; err: DockerCliError }> {
  try {
    return { ok: true, out: await docker(args, o) };
  } catch (e) {
    if (e instanceof DockerCliError) return { ok: false, err: e };
    throw e;
  }
}

/** The container's address on one network ("" when it has none). */
export const containerIp = (container: string, network: string, o?: DockerOptions): Promise<string> =>
  docker(['inspect', '-f', `{{with index .NetworkSettings.Networks ${JSON.stringify(network)}}}{{.IPAddress}}{{end}}`, container], o);

/** Whether a legacy plugin socket answers Plugin.Activate as Docker would ask it. */
export function pluginAnswers(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/Plugin.Activate', method: 'POST', timeout: timeoutMs, headers: { 'Content-Length': 0 } }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => (req.destroy(), resolve(false)));
    req.end();
  });
}
