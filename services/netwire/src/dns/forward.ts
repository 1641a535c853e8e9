import { createSocket } from 'node:dgram';
import { isIPv6, Socket as TcpSocket, connect } from 'node:net';
import { TcpFramer, tcpFrame } from '@weave/dns';

/**
 * Passing a query on to the host's resolvers, as a stub resolver does: each in turn until one
 * answers, its answer returned as it came. Null when none answered in time.
 */
export interface Forwarder {
  udp(query: Buffer): Promise<Buffer | null>;
  tcp(query: Buffer): Promise<Buffer | null>;
}

export function forwarder(resolvers: readonly string[], o: { timeoutMs: number; port?: number }): Forwarder {
  const port = o.port ?? 53;
  const eachUntilAnswered = async (ask: (resolver: string) => Promise<Buffer | null>): Promise<Buffer | null> => {
    for (const r of resolvers) {
      const answer = await ask(r);
      if (answer) return answer;
    }
    return null;
  };
  return {
    udp: (query) => eachUntilAnswered((r) => udpOnce(r, port, query, o.timeoutMs)),
    tcp: (query) => eachUntilAnswered((r) => tcpOnce(r, port, query, o.timeoutMs)),
  };
}

/** One query over UDP from a fresh socket (a fresh source port per query, as RFC 5452 asks). */
function udpOnce(resolver: string, port: number, query: Buffer, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = createSocket(isIPv6(resolver) ? 'udp6' : 'udp4');
    const id = query.readUInt16BE(0);
    const done = (answer: Buffer | null): void => {
      clearTimeout(timer);
      s.close();
      resolve(answer);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    s.on('error', () => done(null));
    s.on('message', (msg, from) => {
      // Only the resolver asked, answering this id: anything else on the port is ignored.
      if (from.address === resolver && from.port === port && msg.length >= 12 && msg.readUInt16BE(0) === id) done(msg);
    });
    s.send(query, port, resolver, (err) => err && done(null));
  });
}

function tcpOnce(resolver: string, port: number, query: Buffer, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const framer = new TcpFramer();
    let settled = false;
    const s: TcpSocket = connect({ host: resolver, port });
    const done = (answer: Buffer | null): void => {
      if (settled) return;
      settled = true;
      s.destroy();
      resolve(answer);
    };
    s.setTimeout(timeoutMs, () => done(null));
    s.on('error', () => done(null));
    s.on('close', () => done(null));
    s.on('connect', () => s.write(tcpFrame(query)));
    s.on('data', (chunk) => {
      const [answer] = framer.push(chunk);
      if (answer) done(answer);
    });
  });
}
