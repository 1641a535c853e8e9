import { connect as connectSocket } from 'node:net';
import { request } from 'node:http';
import { headers as natsHeaders, NatsConnection } from '@nats-io/nats-core';
import { RpcHeaders } from '@weave/contracts';
import type { Case } from './cases';

/** What came back. `failed` is a transport failure: no answer at all. */
export type Outcome =
  | { kind: 'http'; status: number; body: string }
  | { kind: 'reply'; data: Uint8Array }
  | { kind: 'sent' }
  | { kind: 'failed'; error: string };

export interface Endpoints {
  socket: string;
  nc: NatsConnection;
  timeoutMs: number;
}

export function send(e: Endpoints, c: Case): Promise<Outcome> {
  switch (c.to) {
    case 'plugin':
      return postHttp(e, c);
    case 'plugin-raw':
      return rawHttp(e, c.bytes);
    case 'nats':
      return natsMessage(e, c);
  }
}

/** As Docker does: a fresh connection, one request. */
function postHttp(e: Endpoints, c: Extract<Case, { to: 'plugin' }>): Promise<Outcome> {
  return new Promise((resolve) => {
    const headers = c.chunked ? c.headers : { ...c.headers, 'Content-Length': String(c.body.length) };
    const req = request({ socketPath: e.socket, path: c.path, method: c.verb, agent: false, headers, timeout: e.timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ kind: 'http', status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => resolve({ kind: 'failed', error: `reading the answer: ${err.message}` }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${e.timeoutMs} ms`)));
    req.on('error', (err) => resolve({ kind: 'failed', error: err.message }));
    if (c.chunked) {
      // Two writes without a length: Node sends them as chunks.
      req.write(c.body.subarray(0, c.body.length >> 1));
      req.end(c.body.subarray(c.body.length >> 1));
    } else req.end(c.body);
  });
}

/**
 * Bytes straight onto the socket, for requests Node's client refuses to write. Reads one answer:
 * its head, then as many bytes as its Content-Length says (the plugin always sends one).
 */
function rawHttp(e: Endpoints, bytes: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = connectSocket(e.socket);
    let got = Buffer.alloc(0);
    const finish = (o: Outcome) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish({ kind: 'failed', error: `no answer within ${e.timeoutMs} ms` }), e.timeoutMs);
    const parse = (closed: boolean) => {
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return closed && finish({ kind: 'failed', error: `connection closed after ${got.length} bytes, no HTTP answer` });
      const head = got.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
      const body = got.subarray(end + 4);
      if (length >= 0 && body.length >= length) return finish({ kind: 'http', status, body: body.subarray(0, length).toString('utf8') });
      if (closed) finish({ kind: 'http', status, body: body.toString('utf8') });
    };
    sock.on('data', (d: Buffer) => ((got = Buffer.concat([got, d])), parse(false)));
    sock.on('close', () => parse(true));
    sock.on('error', () => undefined); // the close that follows reports it
    sock.write(bytes);
  });
}

async function natsMessage(e: Endpoints, c: Extract<Case, { to: 'nats' }>): Promise<Outcome> {
  const h = natsHeaders();
  if (c.deadline !== undefined) h.set(RpcHeaders.deadline, c.deadline);
  try {
    if (!c.reply) {
      e.nc.publish(c.subject, c.data, { headers: h });
      return { kind: 'sent' };
    }
    const m = await e.nc.request(c.subject, c.data, { timeout: e.timeoutMs, headers: h });
    return { kind: 'reply', data: m.data };
  } catch (err) {
    return { kind: 'failed', error: err instanceof Error ? err.message : String(err) };
  }
}
