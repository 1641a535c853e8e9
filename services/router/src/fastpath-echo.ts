import { randomBytes } from 'node:crypto';

/**
 * The fast path probe's protocol and per-peer verdicts, sans-IO: buffers and time in, packets to
 * send and verdict changes out (fastpath-probe.ts does the I/O).
 *
 * An echo is 40 bytes: "WVFP", version 1, kind (1 request, 2 reply), 2 reserved, the sender's
 * and the target's 64-bit peer ids, and a 16-byte random nonce that the reply carries back. A
 * reply counts only from the peer asked, from its probe address, with a nonce still
 * outstanding; anything else is ignored. Off the path, nobody can answer for a peer.
 */
export const ECHO_BYTES = 40;
const MAGIC = 0x57564650; // "WVFP"
const VERSION = 1;
const KINDS = { request: 1, reply: 2 } as const;

export interface Echo {
  kind: keyof typeof KINDS;
  from: bigint;
  to: bigint;
  nonce: Buffer;
}

export function encodeEcho(e: Echo): Buffer {
  if (e.nonce.length !== 16) throw new RangeError('an echo nonce is 16 bytes');
  const b = Buffer.alloc(ECHO_BYTES);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt8(VERSION, 4);
  b.writeUInt8(KINDS[e.kind], 5);
  b.writeBigUInt64BE(e.from, 8);
  b.writeBigUInt64BE(e.to, 16);
  e.nonce.copy(b, 24);
  return b;
}

/** The echo in `b`, or null for anything that is not one of ours. */
export function decodeEcho(b: Buffer): Echo | null {
  if (b.length !== ECHO_BYTES || b.readUInt32BE(0) !== MAGIC || b.readUInt8(4) !== VERSION) return null;
  const kind = b.readUInt8(5) === KINDS.request ? 'request' : b.readUInt8(5) === KINDS.reply ? 'reply' : null;
  if (!kind) return null;
  return { kind, from: b.readBigUInt64BE(8), to: b.readBigUInt64BE(16), nonce: Buffer.from(b.subarray(24, 40)) };
}

const groups = (id: bigint): string[] => [48n, 32n, 16n, 0n].map((s) => ((id >> s) & 0xffffn).toString(16));

/** A host's address on the probe device: link-local, the interface id being its peer id. */
export const probeAddressOf = (peerId: bigint): string => new URL(`http://[fe80::${groups(peerId).join(':')}]`).hostname.slice(1, -1);

/** A host's MAC on the probe device: 46 bits of its peer id, locally administered, unicast. */
export function probeMacOf(peerId: bigint): string {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(peerId);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export interface ProbePeer {
  host: string;
  /** Its underlay address, where its VXLAN packets go. */
  address: string;
  peerId: bigint;
}

export interface PeerVerdict {
  up: boolean;
  reason: string;
  /** When `up` last changed (or the peer was added), in the clock's ms. */
  since: number;
}

export interface VerdictChange {
  host: string;
  up: boolean;
  reason: string;
}

interface PeerState extends PeerVerdict {
  peer: ProbePeer;
  /** The last reply, or when probing began. */
  heard: number;
  /** Nonces of requests still awaiting a reply, newest last. */
  outstanding: Buffer[];
  sendError: string | null;
}

/** Requests in flight per peer: a reply slower than this many intervals is as good as lost. */
const OUTSTANDING = 4;

export interface EchoTableOptions {
  localPeerId: bigint;
  vxlanPort: number;
  downAfterMs: number;
  nonce?: () => Buffer;
}

/** Every peer's verdict, from the replies that came (or did not) in time. */
export class EchoTable {
  private readonly peers = new Map<string, PeerState>();
  private unavailable: string | null = null;
  private readonly nonce: () => Buffer;

  constructor(private readonly o: EchoTableOptions) {
    this.nonce = o.nonce ?? (() => randomBytes(16));
  }

  /** The fast path cannot be probed at all (no IPv6, no probe device): every peer is down for `reason`. */
  disable(reason: string, now: number): VerdictChange[] {
    this.unavailable = reason;
    return [...this.peers.values()].flatMap((s) => this.judge(s, false, reason, now));
  }

  /** Adds and removes peers; a new one starts down while it is probed, a kept one keeps its verdict. */
  setPeers(peers: readonly ProbePeer[], now: number): void {
    const next = new Map(peers.map((p) => [p.host, p]));
    for (const host of this.peers.keys()) if (!next.has(host)) this.peers.delete(host);
    for (const p of next.values()) {
      const s = this.peers.get(p.host);
      if (!s) {
        const reason = this.unavailable ?? `probing VXLAN to ${p.host} (UDP ${this.o.vxlanPort})`;
        this.peers.set(p.host, { peer: p, up: false, reason, since: now, heard: now, outstanding: [], sendError: null });
      } else if (s.peer.address !== p.address || s.peer.peerId !== p.peerId) {
        s.peer = p;
        s.outstanding = [];
      }
    }
  }

  state(host: string): PeerVerdict | undefined {
    const s = this.peers.get(host);
    return s && { up: s.up, reason: s.reason, since: s.since };
  }

  /** One interval: peers silent too long go down; every peer gets a new request. */
  tick(now: number): { send: Array<{ peer: ProbePeer; packet: Buffer }>; changes: VerdictChange[] } {
    if (this.unavailable) return { send: [], changes: [] };
    const changes: VerdictChange[] = [];
    const send: Array<{ peer: ProbePeer; packet: Buffer }> = [];
    for (const s of this.peers.values()) {
      if (now - s.heard > this.o.downAfterMs) changes.push(...this.judge(s, false, this.silence(s), now));
      send.push({ peer: s.peer, packet: this.request(s) });
    }
    return { send, changes };
  }

  /** A request to `host` now, outside the interval (a peer just added need not wait for the next); null when not a peer. */
  requestTo(host: string): Buffer | null {
    const s = this.peers.get(host);
    return s && !this.unavailable ? this.request(s) : null;
  }

  /** A send to `host` failed: the reason it gives if no reply comes. */
  sendFailed(host: string, error: string): void {
    const s = this.peers.get(host);
    if (s) s.sendError = error;
  }

  /** A datagram from `fromAddress` (its scope stripped): a reply to send back, and any verdict change. */
  receive(now: number, fromAddress: string, packet: Buffer): { reply: Buffer | null; changes: VerdictChange[] } {
    const e = decodeEcho(packet);
    const s = e && e.to === this.o.localPeerId ? this.bySender(e.from, fromAddress) : undefined;
    if (!e || !s || this.unavailable) return { reply: null, changes: [] };
    if (e.kind === 'request') return { reply: encodeEcho({ kind: 'reply', from: this.o.localPeerId, to: e.from, nonce: e.nonce }), changes: [] };
    const i = s.outstanding.findIndex((n) => n.equals(e.nonce));
    if (i < 0) return { reply: null, changes: [] };
    s.outstanding.splice(i, 1);
    s.heard = now;
    s.sendError = null;
    return { reply: null, changes: this.judge(s, true, `${s.peer.host} answers over VXLAN (UDP ${this.o.vxlanPort})`, now) };
  }

  private request(s: PeerState): Buffer {
    const nonce = this.nonce();
    s.outstanding = [...s.outstanding, nonce].slice(-OUTSTANDING);
    return encodeEcho({ kind: 'request', from: this.o.localPeerId, to: s.peer.peerId, nonce });
  }

  private bySender(peerId: bigint, fromAddress: string): PeerState | undefined {
    if (fromAddress !== probeAddressOf(peerId)) return undefined;
    for (const s of this.peers.values()) if (s.peer.peerId === peerId) return s;
    return undefined;
  }

  private silence(s: PeerState): string {
    const secs = Math.round(this.o.downAfterMs / 100) / 10;
    if (s.sendError) return `cannot send VXLAN probes to ${s.peer.host} (${s.peer.address}): ${s.sendError}`;
    return `no VXLAN reply from ${s.peer.host} (${s.peer.address}) for ${secs} s: its UDP port ${this.o.vxlanPort} may be blocked`;
  }

  /** Sets a verdict; a change (of `up` or of the reason) is reported, `since` moves with `up` only. */
  private judge(s: PeerState, up: boolean, reason: string, now: number): VerdictChange[] {
    if (s.up === up && s.reason === reason) return [];
    if (s.up !== up) s.since = now;
    s.up = up;
    s.reason = reason;
    return [{ host: s.peer.host, up, reason }];
  }
}
