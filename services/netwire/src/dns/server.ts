import { createSocket, Socket as UdpSocket } from 'node:dgram';
import { createServer, Server, Socket as TcpSocket } from 'node:net';
import { DnsFormatError, encodeAnswer, formatErrorReply, parseQuery, Rcode, TcpFramer, tcpFrame } from '@weave/dns';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import type { Cidr } from '@weave/netaddr';
import { decide } from './decide';
import type { Forwarder } from './forward';
import type { NameIndex } from './names';

/** A network weave DNS serves: queries reach it on the network's gateway, on the network's bridge. */
export interface DnsNetwork {
  bridge: string;
  /** The IPv4 gateway, bare. */
  gateway: string;
  subnets: Cidr[];
}

export interface DnsServerOptions {
  names: () => NameIndex;
  forward: Forwarder;
  log: Logger;
  /** 53 in production; tests pick a free one. */
  port?: number;
  /** Queries being passed on at once; beyond it, SERVFAIL at once rather than unbounded sockets. */
  maxForwarding?: number;
}

interface Listener {
  network: DnsNetwork;
  udp: UdpSocket;
  tcp: Server;
  /** Open TCP connections, ended with the listener. */
  conns: Set<TcpSocket>;
}

const TCP_IDLE_MS = 10_000;

/**
 * Weave DNS: UDP and TCP on port 53 of each network's gateway address. Only the gateway, so it
 * is reached from that network's containers (and the host), never from the underlay; the
 * network a query came from is the address it arrived on.
 */
export class DnsServer {
  private readonly listeners = new Map<string, Listener>();
  private forwarding = 0;
  private syncing: Promise<void> = Promise.resolve();
  private readonly port: number;

  constructor(private readonly o: DnsServerOptions) {
    this.port = o.port ?? 53;
  }

  /** Listens on the gateways of `networks` and on no others. One call at a time, in order. */
  sync(networks: readonly DnsNetwork[]): Promise<void> {
    this.syncing = this.syncing.then(() => this.apply(networks));
    return this.syncing;
  }

  /** The gateways listened on. */
  gateways(): string[] {
    return [...this.listeners.keys()].sort();
  }

  async stop(): Promise<void> {
    await this.sync([]);
  }

  private async apply(networks: readonly DnsNetwork[]): Promise<void> {
    const wanted = new Map(networks.map((n) => [n.gateway, n]));
    for (const [gateway, l] of this.listeners) {
      if (!wanted.has(gateway)) {
        this.listeners.delete(gateway);
        await close(l);
        this.o.log.info({ gateway, bridge: l.network.bridge }, `weave DNS stopped listening on ${gateway}`);
      }
    }
    for (const n of wanted.values()) {
      const l = this.listeners.get(n.gateway);
      if (l) {
        l.network = n;
        continue;
      }
      try {
        this.listeners.set(n.gateway, await this.listen(n));
        this.o.log.info({ gateway: n.gateway, bridge: n.bridge }, `weave DNS listening on ${n.gateway}:${this.port}`);
      } catch (err) {
        // The network still works, only its names do not resolve across hosts; the next sync tries again.
        this.o.log.error({ err, gateway: n.gateway, bridge: n.bridge }, `weave DNS cannot listen on ${n.gateway}:${this.port} (${describeError(err)}); containers of ${n.bridge} resolve only names on their own host`);
      }
    }
  }

  private async listen(network: DnsNetwork): Promise<Listener> {
    const udp = createSocket({ type: 'udp4' });
    const tcp = createServer((s) => this.serveTcp(s, l));
    const l: Listener = { network, udp, tcp, conns: new Set() };
    udp.on('message', (msg, from) => void this.serveUdp(l, msg, from.address, from.port));
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: network.gateway, port: this.port, exclusive: true }, () => (udp.off('error', reject), resolve()));
      });
      udp.on('error', (err) => this.o.log.warn({ err, gateway: network.gateway }, 'weave DNS UDP socket error'));
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: network.gateway, port: this.port }, () => (tcp.off('error', reject), resolve()));
      });
      tcp.on('error', (err) => this.o.log.warn({ err, gateway: network.gateway }, 'weave DNS TCP listener error'));
    } catch (err) {
      await close(l);
      throw err;
    }
    return l;
  }

  private async serveUdp(l: Listener, msg: Buffer, address: string, port: number): Promise<void> {
    const reply = await this.reply(l, msg, (q) => this.o.forward.udp(q));
    if (reply) l.udp.send(reply, port, address, (err) => err && this.o.log.debug({ err, to: address }, 'weave DNS reply not sent'));
  }

  private serveTcp(s: TcpSocket, l: Listener): void {
    const framer = new TcpFramer();
    l.conns.add(s);
    s.on('close', () => l.conns.delete(s));
    s.setTimeout(TCP_IDLE_MS, () => s.destroy());
    s.on('error', () => s.destroy());
    s.on('data', (chunk) => {
      for (const msg of framer.push(chunk)) {
        void this.reply(l, msg, (q) => this.o.forward.tcp(q)).then((reply) => {
          if (reply && !s.destroyed) s.write(tcpFrame(reply));
        });
      }
    });
  }

  /** The answer to one message; null when there is nothing to answer (no readable id). */
  private async reply(l: Listener, msg: Buffer, forward: (q: Buffer) => Promise<Buffer | null>): Promise<Buffer | null> {
    let q;
    try {
      q = parseQuery(msg);
    } catch (err) {
      if (err instanceof DnsFormatError) return formatErrorReply(err);
      throw err;
    }
    const d = decide(q, l.network.subnets, this.o.names());
    if (d.kind === 'answer') return encodeAnswer(q, d);
    if (this.forwarding >= (this.o.maxForwarding ?? 256)) return encodeAnswer(q, { rcode: Rcode.servFail, authoritative: false });
    this.forwarding++;
    try {
      const answer = await forward(msg);
      if (!answer) this.o.log.debug({ name: q.question.name }, 'no host resolver answered');
      return answer ?? encodeAnswer(q, { rcode: Rcode.servFail, authoritative: false });
    } finally {
      this.forwarding--;
    }
  }
}

async function close(l: Listener): Promise<void> {
  await new Promise<void>((r) => {
    try {
      l.udp.close(() => r());
    } catch {
      r();
    }
  });
  for (const s of l.conns) s.destroy();
  await new Promise<void>((r) => l.tcp.close(() => r()));
}
