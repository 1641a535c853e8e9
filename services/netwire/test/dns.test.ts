import { createSocket, Socket } from 'node:dgram';
import { connect, createServer, Server } from 'node:net';
import { AddressInfo } from 'node:net';
import { DnsRecord } from '@weave/contracts';
import { answerAddresses, encodeAnswer, encodeQuery, parseQuery, Rcode, RecordType, TcpFramer, tcpFrame } from '@weave/dns';
import { parseCidr } from '@weave/netaddr';
import { silentLogger } from '@weave/log';
import { decide } from '../src/dns/decide';
import { forwarder } from '../src/dns/forward';
import { bareName, NameIndex } from '../src/dns/names';
import { dnsNetworkOf } from '../src/dns/networks';
import { DnsServer } from '../src/dns/server';
import { nameserversOf, upstreamsOf } from '../src/dns/upstreams';
import { networkSpec } from './helpers';

const hex = (c: string): string => c.repeat(64);
const record = (o: Partial<DnsRecord> & Pick<DnsRecord, 'names' | 'addresses'>): DnsRecord => ({ host: 'host1', containerId: hex('a'), endpointId: hex('b'), network: 'weave:foo', ...o });
const NET_A = [parseCidr('10.32.0.0/24'), parseCidr('fd00:1::/64')];
const NET_B = [parseCidr('10.33.0.0/24')];

describe('which resolvers weave DNS stands in for', () => {
  it.each<[string, string[], string[]]>([
    ['nameserver 10.255.255.53\nsearch example.com\n', ['10.255.255.53'], ['10.255.255.53']],
    // Docker drops loopback resolvers and gives containers Google's: those are what arrive.
    ['nameserver 127.0.0.53\noptions edns0\n', ['8.8.8.8', '8.8.4.4'], ['127.0.0.53']],
    ['# none\n', ['8.8.8.8', '8.8.4.4'], []],
    ['nameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n', ['192.0.2.1', '192.0.2.2'], ['192.0.2.1', 'fe80::1', '192.0.2.2']],
    ['nameserver not-an-address\n', ['8.8.8.8', '8.8.4.4'], []],
  ])('%j', (text, intercepted, forwardTo) => {
    expect(upstreamsOf(text)).toEqual({ intercepted, forwardTo });
    expect(nameserversOf(text)).toEqual(forwardTo);
  });
});

describe('names', () => {
  const index = new NameIndex([
    record({ names: ['web', 'www'], addresses: ['10.32.0.5', 'fd00:1::5'] }),
    record({ names: ['web'], addresses: ['10.32.0.9'], endpointId: hex('c'), host: 'host2' }),
    record({ names: ['web'], addresses: ['10.33.0.7'], endpointId: hex('d'), network: 'weave:bar' }),
  ]);
  it('finds every container of a name, of the asking network only', () => {
    expect(index.lookup('web', NET_A)).toEqual(['10.32.0.5', '10.32.0.9', 'fd00:1::5']);
    expect(index.lookup('WEB.weave.local.', NET_B)).toEqual(['10.33.0.7']);
    expect(index.lookup('www', NET_B)).toEqual([]);
    expect(index.lookup('nothing', NET_A)).toEqual([]);
  });
  it('reads weave.local names as bare ones', () => {
    expect(bareName('db.weave.local')).toBe('db');
    expect(bareName('db.example.com.')).toBe('db.example.com');
  });

  const ask = (name: string, type: number = RecordType.A) => decide(parseQuery(encodeQuery(1, name, type)), NET_A, index);
  it('answers the mesh names, says an unknown weave.local name does not exist, passes on the rest', () => {
    expect(ask('web')).toMatchObject({ kind: 'answer', rcode: Rcode.noError, answers: [{ address: '10.32.0.5' }, { address: '10.32.0.9' }] });
    expect(ask('web.weave.local', RecordType.AAAA)).toMatchObject({ kind: 'answer', answers: [{ address: 'fd00:1::5' }] });
    expect(ask('web', 15)).toEqual({ kind: 'answer', rcode: Rcode.noError, authoritative: true, answers: [] });
    expect(ask('gone.weave.local')).toEqual({ kind: 'answer', rcode: Rcode.nxDomain, authoritative: true, answers: [] });
    expect(ask('example.com')).toEqual({ kind: 'forward' });
    expect(ask('5.0.32.10.in-addr.arpa', RecordType.PTR)).toEqual({ kind: 'forward' });
  });

  it('serves a network on its first IPv4 gateway, and none without one', () => {
    const spec = networkSpec({ ipv4: [{ pool: '10.32.0.0/24', gateway: '10.32.0.1/24' }] });
    expect(dnsNetworkOf({ bridge: 'wvb1', spec })).toEqual({ bridge: 'wvb1', gateway: '10.32.0.1', subnets: [parseCidr('10.32.0.0/24')] });
    expect(dnsNetworkOf({ bridge: 'wvb1', spec: { ...spec, internal: true } })).toBeNull();
  });
});

describe('the server, on loopback sockets', () => {
  const log = silentLogger();
  let upstream: Socket;
  let upstreamTcp: Server;
  let upstreamPort = 0;
  const seen: string[] = [];
  let server: DnsServer;
  let port = 0;
  const index = new NameIndex([record({ names: ['web'], addresses: ['10.32.0.5'] })]);
  const upstreamAnswer = (msg: Buffer): Buffer => {
    const q = parseQuery(msg);
    seen.push(q.question.name);
    return encodeAnswer(q, { rcode: Rcode.noError, authoritative: false, answers: [{ address: '192.0.2.7', ttl: 60 }] });
  };

  beforeAll(async () => {
    // A stand-in for the host's resolver, on 127.0.0.1: the only address these tests send to.
    upstream = createSocket('udp4');
    await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', r));
    upstreamPort = (upstream.address() as AddressInfo).port;
    upstream.on('message', (msg, from) => upstream.send(upstreamAnswer(msg), from.port, from.address));
    upstreamTcp = createServer((s) => {
      const f = new TcpFramer();
      s.on('data', (c) => f.push(c).forEach((m) => s.write(tcpFrame(upstreamAnswer(m)))));
    });
    await new Promise<void>((r) => upstreamTcp.listen(upstreamPort, '127.0.0.1', r));
    // A free port for the server on 127.0.0.2 (every 127/8 address is the host's).
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.2', r));
    port = (probe.address() as AddressInfo).port;
    probe.close();
    server = new DnsServer({ names: () => index, forward: forwarder(['127.0.0.1'], { timeoutMs: 1000, port: upstreamPort }), log, port });
    await server.sync([{ bridge: 'wvb1', gateway: '127.0.0.2', subnets: NET_A }]);
  });
  afterAll(async () => {
    await server?.stop();
    upstream?.close();
    await new Promise((r) => upstreamTcp?.close(r));
  });

  const udpAsk = (msg: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const s = createSocket('udp4');
      const timer = setTimeout(() => (s.close(), reject(new Error('no answer in 2 s'))), 2000);
      s.on('message', (m) => (clearTimeout(timer), s.close(), resolve(m)));
      s.send(msg, port, '127.0.0.2');
    });

  it('listens on the gateway only', () => {
    expect(server.gateways()).toEqual(['127.0.0.2']);
  });

  it('answers a mesh name over UDP without asking the host resolver', async () => {
    const before = seen.length;
    expect(answerAddresses(await udpAsk(encodeQuery(11, 'web', RecordType.A)))).toEqual({ id: 11, rcode: 0, addresses: ['10.32.0.5'] });
    expect(seen.length).toBe(before);
  });

  it('passes other names on to the host resolver and relays its answer', async () => {
    expect(answerAddresses(await udpAsk(encodeQuery(12, 'example.org', RecordType.A)))).toEqual({ id: 12, rcode: 0, addresses: ['192.0.2.7'] });
    expect(seen).toContain('example.org');
  });

  it('answers garbage with FORMERR and stays up', async () => {
    const bad = encodeQuery(13, 'web', RecordType.A);
    bad.writeUInt16BE(3, 4);
    expect(answerAddresses(await udpAsk(bad)).rcode).toBe(Rcode.formErr);
    expect(answerAddresses(await udpAsk(encodeQuery(14, 'web', RecordType.A))).addresses).toEqual(['10.32.0.5']);
  });

  it('answers and passes on over TCP too', async () => {
    const s = connect(port, '127.0.0.2');
    const f = new TcpFramer();
    const answers: Buffer[] = [];
    const two = new Promise<void>((r) => s.on('data', (c) => (answers.push(...f.push(c)), answers.length >= 2 && r())));
    s.write(Buffer.concat([tcpFrame(encodeQuery(21, 'web.weave.local', RecordType.A)), tcpFrame(encodeQuery(22, 'example.net', RecordType.A))]));
    await two;
    s.destroy();
    const byId = Object.fromEntries(answers.map((a) => { const r = answerAddresses(a); return [r.id, r.addresses]; }));
    expect(byId).toEqual({ 21: ['10.32.0.5'], 22: ['192.0.2.7'] });
  });

  it('says SERVFAIL when no host resolver answers', async () => {
    const silent = new DnsServer({ names: () => index, forward: forwarder([], { timeoutMs: 100 }), log, port });
    await server.sync([]);
    try {
      await silent.sync([{ bridge: 'wvb1', gateway: '127.0.0.2', subnets: NET_A }]);
      expect(answerAddresses(await udpAsk(encodeQuery(31, 'example.org', RecordType.A))).rcode).toBe(Rcode.servFail);
    } finally {
      await silent.stop();
      await server.sync([{ bridge: 'wvb1', gateway: '127.0.0.2', subnets: NET_A }]);
    }
  });
});
