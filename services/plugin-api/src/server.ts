import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import { describeError, WeaveError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { z } from 'zod';
import type { Iface, Route } from './driver';

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

/** Docker's bodies are a few hundred bytes; anything this large is not Docker. */
export const MAX_BODY_BYTES = 1 << 20;

export interface CallObserver {
  (call: { method: string; status: number; ms: number; error?: string }): void;
}

/**
 * The plugin's HTTP endpoint. It speaks Docker's dialect of errors: `Err` for network calls,
 * `Error` for IPAM calls (Docker ignores the other one), always a JSON body, and a non-200 status
 * for requests that are broken rather than refused.
 */
export function pluginServer(table: Record<string, Route>, log: Logger, observe: CallObserver = () => {}): Server {
  // Docker 20.10 sends an empty Host and newer ones plugin.moby.localhost; a missing one is no
  // reason for Node's bare 400 either, which Docker could not show as an error.
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const started = performance.now();
    const method = (req.url ?? '').replace(/^\//, '').split('?')[0] ?? '';
    const done = (status: number, body: unknown, error?: string): void => {
      send(res, status, body);
      observe({ method, status, ms: performance.now() - started, error });
    };
    void serve(table, method, req, log).then(
      (r) => done(r.status, r.body, r.error),
      (e) => done(500, { Err: `weave: ${describeError(e)}` }, describeError(e)),
    );
  });
  server.on('clientError', refuseBrokenHttp);
  return server;
}

/**
 * Bytes that are not HTTP never reach a route; Node would answer them with a bare 400. They
 * get Docker's error format all the same (and, as Node does, only while nothing was written).
 */
function refuseBrokenHttp(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || (socket as Socket).bytesWritten > 0) return void socket.destroy();
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const text = JSON.stringify({ Err: `weave: malformed HTTP request (${err.code ?? err.message})` });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

interface Outcome {
  status: number;
  body: unknown;
  error?: string;
}

async function serve(table: Record<string, Route>, method: string, req: IncomingMessage, log: Logger): Promise<Outcome> {
  // Own routes only: a path such as /constructor must not find Object's.
  const route = Object.hasOwn(table, method) ? table[method] : undefined;
  // Read first, also what is refused unread: answering (and closing) while the caller still
  // writes can make it see a broken pipe instead of the answer.
  const raw = await readBody(req);
  if (req.method !== 'POST' || !route) return { status: 404, body: { Err: `weave: no such plugin method ${req.method} /${method}` } };
  if (raw === 'too-large') return fail(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
  let body: unknown = undefined;
  if (route.body) {
    // An empty body on a call with arguments is Docker's retry after a dropped connection: the
    // original body was consumed. Acting on it as if every field were empty would be wrong.
    if (raw.trim() === '') return fail(400, `empty request for ${method} (Docker retried a request whose body was lost)`);
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      return fail(400, `${method}: body is not JSON`);
    }
    const parsed = route.body.safeParse(json);
    if (!parsed.success) return refuse(route.iface, `invalid ${method} request: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`);
    body = parsed.data;
  }
  try {
    return { status: 200, body: await route.handle(body) };
  } catch (e) {
    const message = describeError(e);
    const code = e instanceof WeaveError ? e.code : 'internal';
    log[code === 'internal' || code === 'unavailable' ? 'error' : 'warn']({ method, code, err: e }, `${method} failed: ${message}`);
    return refuse(route.iface, message);
  }
}

/** A refusal Docker shows the user as "remote: <message>". */
function refuse(iface: Iface, message: string): Outcome {
  const field = iface === 'IpamDriver' ? 'Error' : 'Err';
  return { status: 200, body: { [field]: `weave: ${message}` }, error: message };
}

/** A broken request: non-200, where Docker reads `Err` for every interface. */
function fail(status: number, message: string): Outcome {
  return { status, body: { Err: `weave: ${message}` }, error: message };
}

/**
 * Reads at most MAX_BODY_BYTES; past that it keeps draining (so the caller can read our 413)
 * but stops buffering, and gives up on the connection at 16× the limit.
 */
function readBody(req: IncomingMessage): Promise<string | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
      else if (size > 16 * MAX_BODY_BYTES) req.destroy();
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? 'too-large' : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Listens on the plugin socket, replacing a stale one, readable by root only. */
export async function listenOnSocket(server: Server, path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  // Short of SIGKILL, the socket file does not outlive the process: a stale one makes Docker
  // connect, fail and retry instead of seeing at once that the plugin is gone.
  const removeSocket = () => rmSync(path, { force: true });
  process.once('exit', removeSocket);
  // Closing removes the file itself; the listener must go too, or each server (tests start many) leaves one behind.
  server.once('close', () => process.off('exit', removeSocket));
}
