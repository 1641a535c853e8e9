import { connect as connectSocket } from 'node:net';
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

/**
 * As Docker does: a fresh connection, one request. Written by hand rather than with Node's client,
 * which reports EPIPE instead of the answer when the server answers and closes while the last of
 * a large body is still being handed over (as Go's client, Docker's, does not).
 */
function postHttp(e: Endpoints, c: Extract<Case, { to: 'plugin' }>): Promise<Outcome> {
  const head = [`${c.verb} ${c.path} HTTP/1.1`, ...Object.entries(c.headers).map(([k, v]) => `${k}: ${v}`), 'Connection: close'];
  if (!c.chunked) return rawHttp(e, Buffer.concat([Buffer.from([...head, `Content-Length: ${c.body.length}`, '', ''].join('\r\n'), 'latin1'), c.body]));
  // Two chunks and the last, empty one.
  const half = c.body.length >> 1;
  const chunk = (b: Buffer) => (b.length === 0 ? [] : [Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
  const body = [...chunk(c.body.subarray(0, half)), ...chunk(c.body.subarray(half)), Buffer.from('0\r\n\r\n')];
  return rawHttp(e, Buffer.concat([Buffer.from([...head, 'Transfer-Encoding: chunked', '', ''].join('\r\n'), 'latin1'), ...body]));
}

/**
 * Bytes straight onto the socket. Reads one answer: its head, then as many bytes as its
 * Content-Length says (the plugin always sends one). An answer counts even if writing failed
 * after it came: the server may answer a request it could refuse before reading all of it.
 */
function rawHttp(e: Endpoints, bytes: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = connectSocket(e.socket);
    let got = Buffer.alloc(0);
    let socketError = '';
    const finish = (o: Outcome) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish({ kind: 'failed', error: `no answer within ${e.timeoutMs} ms` }), e.timeoutMs);
    const parse = (closed: boolean) => {
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return closed && finish({ kind: 'failed', error: `connection closed after ${got.length} bytes, no HTTP answer${socketError}` });
      const head = got.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
      const body = got.subarray(end + 4);
      if (length >= 0 && body.length >= length) return finish({ kind: 'http', status, body: body.subarray(0, length).toString('utf8') });
      if (closed) finish({ kind: 'http', status, body: body.toString('utf8') });
    };
    sock.on('data', (d: Buffer) => ((got = Buffer.concat([got, d])), parse(false)));
    sock.on('close', () => parse(true));
    // The close that follows reports what was answered, if anything.
    sock.on('error', (err) => (socketError = ` (${err.message})`));
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
