import { createSocket, type Socket } from 'node:dgram';
import { ZodError } from 'zod';
import {
  Sleeve,
  SleeveConfigError,
  SleeveRuntimeError,
  bindingAvailable,
  binaryName,
  loadBinding,
  parseSleeveConfig,
  type SleeveStats,
} from '../index';

describe('config schema', () => {
  it('applies defaults and turns ids into bigints', () => {
    const c = parseSleeveConfig({ peerId: 1, peers: [{ id: 2, address: '127.0.0.1:6784' }] });
    expect(c).toEqual({
      peerId: 1n,
      listenHost: '0.0.0.0',
      listenPort: 6784,
      peers: [{ id: 2n, address: '127.0.0.1:6784' }],
      networks: [],
      macMaxAgeMs: 300_000,
      batchBytes: 1472,
    });
  });

  it('takes a path MTU per peer', () => {
    const c = parseSleeveConfig({ peerId: 1, peers: [{ id: 2, address: '127.0.0.1:1', mtu: 1436 }, { id: 3, address: '127.0.0.1:2' }] });
    expect(c.peers).toEqual([
      { id: 2n, address: '127.0.0.1:1', mtu: 1436 },
      { id: 3n, address: '127.0.0.1:2' },
    ]);
  });

  it('keeps multicast beyond the link off unless a network asks for it', () => {
    const c = parseSleeveConfig({ peerId: 1, networks: [{ id: 7, tap: 't7' }, { id: 8, tap: 't8', multicast: true }] });
    expect(c.networks.map((n) => [n.id, n.multicast])).toEqual([[7, false], [8, true]]);
    expect(() => parseSleeveConfig({ peerId: 1, networks: [{ id: 7, tap: 't7', multicast: 'yes' as never }] })).toThrow(SleeveConfigError);
  });

  it('accepts u64 peer ids as bigint and IPv6 peers', () => {
    const c = parseSleeveConfig({ peerId: (1n << 64n) - 1n, peers: [{ id: 5n, address: '[::1]:7000' }] });
    expect(c.peerId).toBe(18446744073709551615n);
  });

  it.each([
    ['peer id 0', { peerId: 0 }],
    ['peer id above u64', { peerId: 1n << 64n }],
    ['unsafe number id', { peerId: 2 ** 60 }],
    ['hostname peer', { peerId: 1, peers: [{ id: 2, address: 'host:6784' }] }],
    ['port missing', { peerId: 1, peers: [{ id: 2, address: '127.0.0.1' }] }],
    ['bare v6', { peerId: 1, peers: [{ id: 2, address: '::1:6784' }] }],
    ['duplicate peer id', { peerId: 1, peers: [{ id: 2, address: '127.0.0.1:1' }, { id: 2, address: '127.0.0.1:2' }] }],
    ['peer is self', { peerId: 1, peers: [{ id: 1, address: '127.0.0.1:1' }] }],
    ['tap name too long', { peerId: 1, networks: [{ id: 7, tap: 'x'.repeat(16) }] }],
    ['duplicate tap', { peerId: 1, networks: [{ id: 7, tap: 't' }, { id: 8, tap: 't' }] }],
    ['network id above u32', { peerId: 1, networks: [{ id: 2 ** 32, tap: 't' }] }],
    ['unknown key', { peerId: 1, mtu: 1400 }],
    ['tiny batch', { peerId: 1, batchBytes: 100 }],
    ['path MTU below 576', { peerId: 1, peers: [{ id: 2, address: '127.0.0.1:1', mtu: 575 }] }],
    ['path MTU above 65535', { peerId: 1, peers: [{ id: 2, address: '127.0.0.1:1', mtu: 65536 }] }],
    ['fractional path MTU', { peerId: 1, peers: [{ id: 2, address: '127.0.0.1:1', mtu: 1300.5 }] }],
  ])('rejects %s', (_name, input) => {
    let err: unknown;
    try {
      parseSleeveConfig(input as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SleeveConfigError);
    expect((err as Error).cause).toBeInstanceOf(ZodError);
  });

  it('takes a password and rekey limits, and never echoes the password', () => {
    const c = parseSleeveConfig({ peerId: 1, password: 'correct horse battery staple', rekeyAfterMessages: 1000 });
    expect(c.password).toBe('correct horse battery staple');
    expect(c.rekeyAfterMessages).toBe(1000);
    expect(parseSleeveConfig({ peerId: 1, password: 'é'.repeat(512) }).password).toHaveLength(512);
    for (const password of ['', 'x'.repeat(1025), 'é'.repeat(513)]) {
      let err: unknown;
      try {
        parseSleeveConfig({ peerId: 1, password });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SleeveConfigError);
      expect((err as Error).message).toMatch(/password/);
      if (password) {
        expect((err as Error).message).not.toContain(password.slice(0, 64));
        expect(JSON.stringify((err as Error).cause)).not.toContain(password.slice(0, 64));
      }
    }
    expect(() => parseSleeveConfig({ peerId: 1, rekeyAfterMessages: 10 })).toThrow(SleeveConfigError);
    expect(() => parseSleeveConfig({ peerId: 1, password: 42 as never })).toThrow(SleeveConfigError);
  });

  it('names the binary the way napi build --platform does', () => {
    expect(binaryName('linux', 'x64', false)).toBe('sleeve.linux-x64-gnu.node');
    expect(binaryName('linux', 'arm64', true)).toBe('sleeve.linux-arm64-musl.node');
    expect(binaryName('darwin', 'arm64', false)).toBe('sleeve.darwin-arm64.node');
  });
});

/** A free UDP port on loopback (released before use; fine for tests). */
async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function until(what: string, f: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const describeNative = bindingAvailable() ? describe : describe.skip;

describeNative(`native addon on loopback (skipped unless ${binaryName()} is built)`, () => {
  let sleeve: Sleeve | undefined;
  let raw: Socket | undefined;
  afterEach(async () => {
    sleeve?.stop();
    sleeve = undefined;
    if (raw) await new Promise<void>((resolve) => raw!.close(() => resolve()));
    raw = undefined;
  });

  it('starts, counts hostile datagrams as bigint, and stops', async () => {
    const port = await freePort();
    raw = createSocket('udp4');
    await new Promise<void>((resolve) => raw!.bind(0, '127.0.0.1', resolve));
    const rawAddr = `127.0.0.1:${raw.address().port}`;
    sleeve = new Sleeve({ peerId: 1, listenHost: '127.0.0.1', listenPort: port });
    expect(sleeve.stats().running).toBe(false);
    sleeve.start();
    expect(sleeve.stats().running).toBe(true);

    const send = (b: Buffer) => raw!.send(b, port, '127.0.0.1');
    const s = () => sleeve!.stats();
    send(Buffer.from('not a peer yet'));
    await until('unknown peer', () => s().dropUnknownPeer === 1n);

    sleeve.applyConfig({ peerId: 1, listenHost: '127.0.0.1', listenPort: port, peers: [{ id: 2, address: rawAddr }] });
    send(Buffer.alloc(40, 0x41)); // header-sized, wrong magic
    await until('bad magic', () => s().malformedBadMagic === 1n);

    const stats: SleeveStats = s();
    expect(typeof stats.datagramsIn).toBe('bigint');
    expect(stats.datagramsIn).toBe(2n);
    expect([stats.dropMulticastOff, stats.dropMulticastOffFromPeer]).toEqual([0n, 0n]);
    sleeve.stop();
    expect(s().running).toBe(false);
    expect(s().datagramsIn).toBe(2n); // counters survive stop
    sleeve.stop(); // idempotent
  });

  it('two sleeves with one password establish a session; another password shows as such', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = (self: number) => [{ id: self === 1 ? 2 : 1, address: `127.0.0.1:${self === 1 ? p2 : p1}` }];
    const cfg = (id: number, port: number, password: string) => ({ peerId: id, listenHost: '127.0.0.1', listenPort: port, peers: peers(id), password });
    sleeve = new Sleeve(cfg(1, p1, 'same secret'));
    const other = new Sleeve(cfg(2, p2, 'same secret'));
    try {
      sleeve.start();
      other.start();
      const state = (s: Sleeve) => s.sessions()[0]?.state;
      await until('established', () => state(sleeve!) === 'established' && state(other) === 'established');
      expect(sleeve.sessions()[0]).toMatchObject({ peerId: 2n, established: true, wrongPassword: false });
      expect(sleeve.sessions()[0]!.handshakeAgeMs).toBeGreaterThanOrEqual(0);
      expect(sleeve.stats().handshakesCompleted).toBeGreaterThanOrEqual(1n);
      // The handshakes crossed the socket: counted for the one peer, both ways.
      const [traffic, ...more] = sleeve.peerTraffic();
      expect(more).toEqual([]);
      expect(traffic).toMatchObject({ peerId: 2n, framesOut: 0n, framesIn: 0n });
      expect(traffic!.datagramsOut).toBeGreaterThanOrEqual(1n);
      expect(traffic!.datagramsIn).toBeGreaterThanOrEqual(1n);
      expect(traffic!.bytesIn).toBeGreaterThan(traffic!.datagramsIn);
      other.applyConfig(cfg(2, p2, 'another secret'));
      await until('wrong password', () => state(other) === 'wrongPassword' && state(sleeve!) === 'wrongPassword', 5000);
      expect(sleeve.stats().handshakesFailed).toBeGreaterThanOrEqual(1n);
    } finally {
      other.stop();
    }
    expect(other.sessions()).toEqual([]);
    expect(other.peerTraffic()).toEqual([]);
  });

  it('takes a path MTU per peer; the addon checks it again', async () => {
    const port = await freePort();
    const peers = [{ id: 2, address: '127.0.0.1:1', mtu: 1300 }];
    sleeve = new Sleeve({ peerId: 1, listenHost: '127.0.0.1', listenPort: port, peers });
    sleeve.start();
    const s = sleeve.stats();
    for (const k of ['dropPathMtu', 'icmpFragNeededSent', 'icmp6PacketTooBigSent', 'icmpRateLimited', 'oversizeForwarded'] as const) {
      expect(s[k]).toBe(0n);
    }
    const unchecked = parseSleeveConfig({ peerId: 1, listenHost: '127.0.0.1', listenPort: port, peers });
    const raw = new (loadBinding().Sleeve)(unchecked);
    expect(() => raw.applyConfig({ ...unchecked, peers: [{ id: 2n, address: '127.0.0.1:1', mtu: 575 }] })).toThrow(/mtu 575/);
  });

  it('maps misuse to typed errors and can restart', async () => {
    const port = await freePort();
    sleeve = new Sleeve({ peerId: 1, listenHost: '127.0.0.1', listenPort: port });
    sleeve.start();
    expect(() => sleeve!.start()).toThrow(SleeveRuntimeError);
    expect(() => sleeve!.applyConfig({ peerId: 1, listenHost: '127.0.0.1', listenPort: port + 1 })).toThrow(
      SleeveConfigError,
    );
    const busy = new Sleeve({ peerId: 2, listenHost: '127.0.0.1', listenPort: port });
    expect(() => busy.start()).toThrow(SleeveRuntimeError); // address in use
    sleeve.stop();
    sleeve.start(); // the socket was closed by stop
    expect(sleeve.stats().running).toBe(true);
  });
});
