import { silentLogger } from '@weave/log';
import { decodeEcho, EchoTable, encodeEcho, probeAddressOf, probeMacOf, ProbePeer } from '../src/fastpath-echo';
import { FastPathProbe, ProbeDevice, ProbeUnavailableError } from '../src/fastpath-probe';
import type { FastPathProbeLike, VxlanPlumbing } from '../src/datapath';
import { FakeFastPathPlumbing, FakePeerProbe } from '../src/fastpath-fakes';
import { LinuxFastPathPlumbing } from '../src/vxlan';

const A = 0x1111222233334444n;
const B = 0x0000000000000005n;
const host2: ProbePeer = { host: 'host2', address: '10.254.203.2', peerId: B };

describe('the echo codec', () => {
  const nonce = Buffer.alloc(16, 7);

  it('round-trips requests and replies', () => {
    for (const kind of ['request', 'reply'] as const) expect(decodeEcho(encodeEcho({ kind, from: A, to: B, nonce }))).toEqual({ kind, from: A, to: B, nonce });
  });

  it.each([
    ['a short datagram', (b: Buffer) => b.subarray(0, 39)],
    ['a longer one', (b: Buffer) => Buffer.concat([b, Buffer.alloc(1)])],
    ['another magic', (b: Buffer) => (b.writeUInt8(0, 0), b)],
    ['another version', (b: Buffer) => (b.writeUInt8(2, 4), b)],
    ['an unknown kind', (b: Buffer) => (b.writeUInt8(3, 5), b)],
  ])('ignores %s', (_what, spoil) => {
    expect(decodeEcho(spoil(encodeEcho({ kind: 'request', from: A, to: B, nonce })))).toBeNull();
  });

  it('derives link-local addresses and unicast, locally administered MACs from peer ids', () => {
    expect(probeAddressOf(A)).toBe('fe80::1111:2222:3333:4444');
    expect(probeAddressOf(B)).toBe('fe80::5');
    expect(probeMacOf(A)).toBe('12:11:22:22:33:33');
    expect(probeMacOf(0xffffffffffffffffn)).toBe('fe:ff:ff:ff:ff:ff');
  });
});

describe('EchoTable', () => {
  let nonces = 0;
  const nonce = () => Buffer.alloc(16, ++nonces);
  const table = (now = 0) => {
    const t = new EchoTable({ localPeerId: A, vxlanPort: 4789, downAfterMs: 3000, nonce });
    t.setPeers([host2], now);
    return t;
  };
  /** What host2 answers to a request. */
  const replyOf = (request: Buffer) => encodeEcho({ ...decodeEcho(request)!, kind: 'reply', from: B, to: A });
  const fromB = probeAddressOf(B);

  it('starts a new peer down while probing, up at the first reply to a request of ours', () => {
    const t = table();
    expect(t.state('host2')).toEqual({ up: false, reason: 'probing VXLAN to host2 (UDP 4789)', since: 0 });
    const { send } = t.tick(0);
    expect(send.map((s) => s.peer.host)).toEqual(['host2']);
    expect(t.receive(40, fromB, replyOf(send[0]!.packet)).changes).toEqual([{ host: 'host2', up: true, reason: 'host2 answers over VXLAN (UDP 4789)' }]);
    expect(t.state('host2')).toMatchObject({ up: true, since: 40 });
  });

  it('goes down after downAfterMs without a reply, saying what may be wrong, and up again at the next reply', () => {
    const t = table();
    t.receive(10, fromB, replyOf(t.tick(0).send[0]!.packet));
    for (const now of [1000, 2000, 3000]) expect(t.tick(now).changes).toEqual([]);
    const down = t.tick(4000);
    expect(down.changes).toEqual([{ host: 'host2', up: false, reason: 'no VXLAN reply from host2 (10.254.203.2) for 3 s: its UDP port 4789 may be blocked' }]);
    expect(t.tick(5000).changes).toEqual([]);
    // A reply to any of the recent requests counts: it may have been slow.
    expect(t.receive(5100, fromB, replyOf(down.send[0]!.packet)).changes).toMatchObject([{ up: true }]);
  });

  it('ignores replies that are not to a request of ours, from another address, or seen before', () => {
    const t = table();
    const request = t.tick(0).send[0]!.packet;
    const reply = replyOf(request);
    const forged = (change: (b: Buffer) => void) => {
      const b = Buffer.from(reply);
      change(b);
      return b;
    };
    expect(t.receive(1, fromB, forged((b) => (b[30] = 0xff))).changes).toEqual([]); // another nonce
    expect(t.receive(1, fromB, forged((b) => b.writeBigUInt64BE(9n, 8))).changes).toEqual([]); // another sender
    expect(t.receive(1, fromB, forged((b) => b.writeBigUInt64BE(9n, 16))).changes).toEqual([]); // not to us
    expect(t.receive(1, probeAddressOf(9n), reply).changes).toEqual([]);
    expect(t.receive(1, fromB, request).changes).toEqual([]); // our own request reflected
    expect(t.state('host2')!.up).toBe(false);
    expect(t.receive(1, fromB, reply).changes).toHaveLength(1);
    t.tick(3500);
    expect(t.receive(3600, fromB, reply).changes).toEqual([]); // replayed
  });

  it('answers requests from peers only, with their nonce', () => {
    const t = table();
    const request = encodeEcho({ kind: 'request', from: B, to: A, nonce: Buffer.alloc(16, 9) });
    expect(decodeEcho(t.receive(0, fromB, request).reply!)).toEqual({ kind: 'reply', from: A, to: B, nonce: Buffer.alloc(16, 9) });
    expect(t.receive(0, probeAddressOf(9n), encodeEcho({ kind: 'request', from: 9n, to: A, nonce: Buffer.alloc(16) })).reply).toBeNull();
  });

  it('gives the send error as the reason when no reply came', () => {
    const t = table();
    t.tick(0);
    t.sendFailed('host2', 'send ENETUNREACH');
    expect(t.tick(3500).changes[0]!.reason).toBe('cannot send VXLAN probes to host2 (10.254.203.2): send ENETUNREACH');
  });

  it('keeps the verdict of a kept peer and forgets removed ones', () => {
    const t = table();
    t.receive(1, fromB, replyOf(t.tick(0).send[0]!.packet));
    t.setPeers([host2, { host: 'host3', address: '10.254.203.3', peerId: 3n }], 2);
    expect([t.state('host2')!.up, t.state('host3')!.up]).toEqual([true, false]);
    t.setPeers([], 3);
    expect(t.state('host2')).toBeUndefined();
  });

  it('holds every peer down with the reason when probing is impossible', () => {
    const t = table();
    expect(t.disable('IPv6 is disabled on this host', 5)).toEqual([{ host: 'host2', up: false, reason: 'IPv6 is disabled on this host' }]);
    t.setPeers([host2, { host: 'host3', address: '10.254.203.3', peerId: 3n }], 6);
    expect(t.state('host3')!.reason).toBe('IPv6 is disabled on this host');
    expect(t.tick(10_000)).toEqual({ send: [], changes: [] });
  });
});

describe('FastPathProbe on a host where probing is impossible', () => {
  it('starts anyway, every peer down with the reason, and creates nothing', async () => {
    const calls: string[] = [];
    const device: ProbeDevice = {
      create: async () => {
        calls.push('create');
        throw new ProbeUnavailableError('IPv6 is disabled on this host (ipv6.disable=1), the fast path cannot be probed');
      },
      setPeers: async () => void calls.push('setPeers'),
      remove: async () => void calls.push('remove'),
    };
    const probe = await FastPathProbe.start({ localAddress: '10.254.203.1', localPeerId: A, vxlanPort: 4789, log: silentLogger(), device });
    await probe.setPeers([host2]);
    expect(probe.unavailable).toMatch(/IPv6 is disabled/);
    expect(probe.state('host2')).toMatchObject({ up: false, reason: 'IPv6 is disabled on this host (ipv6.disable=1), the fast path cannot be probed' });
    await probe.stop();
    expect(calls).toEqual(['create', 'remove']);
  });
});

it('fits the seams the data path takes (checked by the compiler)', () => {
  const probe = (p: FastPathProbe): FastPathProbeLike => p;
  const seams: [VxlanPlumbing, VxlanPlumbing, FastPathProbeLike] = [new LinuxFastPathPlumbing(), new FakeFastPathPlumbing(), new FakePeerProbe()];
  expect([probe, ...seams]).toHaveLength(4);
});
