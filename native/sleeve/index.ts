/**
 * @weave/sleeve: the router's userspace data path. Loads the napi-rs addon built by
 * `npm run build` (sleeve.<platform>-<arch>[-<abi>].node next to this file) and wraps it with
 * a zod-validated config, so nothing malformed crosses into Rust. The packet loop runs in Rust
 * threads; this side only configures it and polls counters.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// Errors: one class per failure, cause kept.

/** The config was rejected (by the schema here, or by the addon's own checks). */
export class SleeveConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SleeveConfigError';
  }
}

/** The addon binary for this platform is missing or failed to load. */
export class SleeveLoadError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SleeveLoadError';
  }
}

/** The OS refused something (bind, open a TAP, start a thread) or the call was out of order. */
export class SleeveRuntimeError extends Error {
  constructor(
    readonly operation: 'applyConfig' | 'start' | 'stop' | 'stats' | 'sessions' | 'peerTraffic',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'SleeveRuntimeError';
  }
}

// ---------------------------------------------------------------------------------------------
// Config schema.

const U64_MAX = (1n << 64n) - 1n;

/** A peer id: a bigint, or a safe integer number, in 1..2^64-1. Always a bigint after parsing. */
export const PeerIdSchema = z
  .union([z.bigint(), z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)])
  .transform((v) => BigInt(v))
  .refine((v) => v > 0n && v <= U64_MAX, 'peer id must be in 1..2^64-1');

const ipAddress = z.string().refine((s) => isIP(s) !== 0, 'must be an IP address');

/** `a.b.c.d:port` or `[v6]:port`; names are not resolved here. */
export const PeerAddressSchema = z.string().refine((s) => {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return false;
  const host = m[1] ?? m[2] ?? '';
  const ok = m[1] !== undefined ? isIP(host) === 6 : isIP(host) === 4;
  return ok && Number(m[3]) >= 1 && Number(m[3]) <= 65535;
}, 'must be ip:port or [ipv6]:port');

/** Linux interface name rules: 1-15 bytes, no '/', ':', whitespace; not '.' or '..'. */
export const TapNameSchema = z
  .string()
  .regex(/^[^/:\s]{1,15}$/, 'must be 1-15 characters without / : or spaces')
  .refine((s) => s !== '.' && s !== '..' && Buffer.byteLength(s) <= 15, 'not a valid interface name');

/**
 * A peer's path MTU: the largest IP packet a frame to it may carry, i.e. the underlay route's MTU
 * less the sleeve's overhead (`sleeveOverhead` in @weave/contracts: 64, or 96 encrypted). A larger packet with DF set
 * (or any IPv6 one) is not sent: an ICMP "fragmentation needed" / "packet too big" tells its
 * sender the MTU. Without it only the wire format limits a frame.
 */
export const PathMtuSchema = z.number().int().min(576).max(65535);

export const PeerSchema = z.object({ id: PeerIdSchema, address: PeerAddressSchema, mtu: PathMtuSchema.optional() }).strict();
export const MacSchema = z
  .string()
  .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'must be a MAC like aa:bb:cc:dd:ee:ff')
  .transform((s) => s.toLowerCase());

export const NetworkSchema = z
  .object({
    id: z.number().int().min(0).max(0xffff_ffff),
    tap: TapNameSchema,
    /** Source MACs that never cross the wire: the anycast gateway every host's bridge answers for. */
    localMacs: z.array(MacSchema).max(16).default([]),
    /** Peers this network's frames go to; default every peer (the others use the fast path). */
    sendTo: z.array(PeerIdSchema).optional(),
    /**
     * Multicast beyond the link (IPv4 outside 224.0.0.0/24, IPv6 outside ff02::/16) crosses hosts.
     * Default false: it stays on this host (not sent, and dropped from peers), counted in
     * `dropMulticastOff` / `dropMulticastOffFromPeer`; broadcast and link-local multicast always cross.
     */
    multicast: z.boolean().default(false),
  })
  .strict();

/**
 * The mesh password: every datagram between routers is encrypted, and only peers with the same
 * password are heard. 1-1024 bytes of UTF-8. Error messages never include it.
 */
export const PasswordSchema = z
  .string({ error: 'must be a string' })
  .refine((s) => s.length > 0 && Buffer.byteLength(s) <= 1024, 'must be 1-1024 bytes');

export const SleeveConfigSchema = z
  .object({
    peerId: PeerIdSchema,
    listenHost: ipAddress.default('0.0.0.0'),
    listenPort: z.number().int().min(0).max(65535).default(6784),
    peers: z.array(PeerSchema).default([]),
    networks: z.array(NetworkSchema).default([]),
    macMaxAgeMs: z.number().int().min(1000).max(0xffff_ffff).default(300_000),
    batchBytes: z.number().int().min(576).max(65507).default(1472),
    password: PasswordSchema.optional(),
    /** With a password: a new handshake after this many datagrams with one key (default 2^32). */
    rekeyAfterMessages: z.number().int().min(100).max(2 ** 32).optional(),
    /** With a password: the session's initiator starts a new handshake after this long (default 120). */
    rekeyAfterSeconds: z.number().int().min(1).max(86_400).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const dup = (values: unknown[], path: string, what: string) => {
      const seen = new Set<unknown>();
      values.forEach((v, i) => {
        if (seen.has(v)) ctx.addIssue({ code: 'custom', path: [path, i], message: `duplicate ${what}` });
        seen.add(v);
      });
    };
    dup(c.peers.map((p) => p.id), 'peers', 'peer id');
    dup(c.peers.map((p) => p.address), 'peers', 'peer address');
    dup(c.networks.map((n) => n.id), 'networks', 'network id');
    dup(c.networks.map((n) => n.tap), 'networks', 'tap name');
    const peerIds = new Set(c.peers.map((p) => p.id));
    c.networks.forEach((n, i) =>
      n.sendTo?.forEach((id, j) => {
        if (!peerIds.has(id)) ctx.addIssue({ code: 'custom', path: ['networks', i, 'sendTo', j], message: 'not one of the configured peers' });
      }),
    );
    c.peers.forEach((p, i) => {
      if (p.id === c.peerId) ctx.addIssue({ code: 'custom', path: ['peers', i, 'id'], message: 'peer id is our own peerId' });
    });
  });

/** What callers write (numbers allowed for ids, defaults optional). */
export type SleeveConfigInput = z.input<typeof SleeveConfigSchema>;
/** What crosses into Rust. */
export type SleeveConfig = z.output<typeof SleeveConfigSchema>;

/**
 * Counters since construction (u64, so bigint). `running` says whether threads are up;
 * `udpGso`/`udpGro` whether the kernel's UDP offloads are in use (false when stopped).
 */
export interface SleeveStats {
  running: boolean;
  udpGso: boolean;
  udpGro: boolean;
  /** Frames read from TAPs; a super-frame (up to 64 KiB, cut into segments here) counts once. */
  tapFramesIn: bigint;
  /** Frames written to TAPs; a super-frame counts the segments it joined. */
  tapFramesOut: bigint;
  tapSuperFramesIn: bigint;
  tapSuperFramesOut: bigint;
  /** TAPs opened without offloads (the kernel refused IFF_VNET_HDR): one syscall per frame. */
  tapsWithoutOffload: bigint;
  framesToPeers: bigint;
  floods: bigint;
  datagramsOut: bigint;
  bytesOut: bigint;
  datagramsIn: bigint;
  bytesIn: bigint;
  framesFromPeers: bigint;
  tapReadErrors: bigint;
  tapWriteErrors: bigint;
  udpSendErrors: bigint;
  udpRecvErrors: bigint;
  /** UDP GSO sends the kernel refused, resent one datagram per message. */
  udpGsoFallbacks: bigint;
  /** Packet threads left at normal priority (no CAP_SYS_NICE): slower on a busy host. */
  threadNiceRefused: bigint;
  dropUnknownPeer: bigint;
  dropSenderMismatch: bigint;
  dropUnknownNetwork: bigint;
  dropNoPeers: bigint;
  /** Frames for a peer this network reaches over the kernel's VXLAN instead (a stale bridge entry). */
  dropPeerElsewhere: bigint;
  dropFrameTooLarge: bigint;
  /**
   * Frames whose IP packet (each segment of a super-frame) exceeds the path MTU of the peer it
   * goes to (the smallest of a flood's), with DF set or IPv6: not sent, answered with an ICMP
   * error unless rate-limited. A super-frame counts once.
   */
  dropPathMtu: bigint;
  /** ICMP "fragmentation needed" (type 3 code 4) written back into a TAP. */
  icmpFragNeededSent: bigint;
  /** ICMPv6 "packet too big" written back into a TAP. */
  icmp6PacketTooBigSent: bigint;
  /** Of `dropPathMtu`, left unanswered by the rate limit (a burst of 50 per network, then 100/s). */
  icmpRateLimited: bigint;
  /**
   * Packets larger than their path MTU that no ICMP may answer (IPv4 without DF, fragments,
   * broadcast/multicast, ICMP errors): sent as before, the underlay fragments their datagram.
   */
  oversizeForwarded: bigint;
  dropRuntFrame: bigint;
  dropInvalidSource: bigint;
  dropLocalDestination: bigint;
  dropLocalOnlySource: bigint;
  /** Frames from a TAP to multicast beyond the link, on a network without the multicast option: not sent. */
  dropMulticastOff: bigint;
  /** Such frames from a peer: not written to the TAP. */
  dropMulticastOffFromPeer: bigint;
  /** TAP reads dropped because the kernel's virtio header or super-frame did not add up. */
  dropOffloadShortRead: bigint;
  dropOffloadUnsupportedGso: bigint;
  dropOffloadBadChecksumOffsets: bigint;
  dropOffloadNotIp: bigint;
  dropOffloadBadIpHeader: bigint;
  dropOffloadBadL4Header: bigint;
  dropOffloadSegmentTooLarge: bigint;
  malformedShortHeader: bigint;
  malformedBadMagic: bigint;
  malformedBadVersion: bigint;
  malformedUnknownFlags: bigint;
  malformedTruncated: bigint;
  malformedTrailingBytes: bigint;
  malformedRuntFrame: bigint;
  malformedFrameTooLarge: bigint;
  /** Handshake initiations sent (retries and rekeys included). */
  handshakesSent: bigint;
  /** Initiations from peers answered. */
  handshakesAnswered: bigint;
  /** Handshakes that put a new session in use (counted once on each side). */
  handshakesCompleted: bigint;
  /** Handshake messages that failed to decrypt: a peer with another password. */
  handshakesFailed: bigint;
  /** Initiations not newer than the peer's last one (replayed). */
  handshakeReplays: bigint;
  /** Stale responses, initiations that lost a simultaneous initiation, handshakes while encryption is off. */
  handshakesIgnored: bigint;
  /** Handshakes that replaced a session in use. */
  rekeys: bigint;
  /** Frames not sent because the peer has no session (yet), never sent in plaintext instead. */
  dropNoSession: bigint;
  /** Plaintext datagrams dropped because this sleeve encrypts (the peer has no password). */
  dropPlaintext: bigint;
  /** Encrypted datagrams dropped because this sleeve has no password (the peer has one). */
  dropEncrypted: bigint;
  /** Transport datagrams that failed authentication. */
  decryptFailures: bigint;
  /** Transport datagrams already seen or older than the replay window. */
  replaysDropped: bigint;
  /** Transport datagrams for a session this sleeve does not have (a handshake follows). */
  dropUnknownSession: bigint;
  dropSessionExpired: bigint;
}

/** A peer's encryption state, as `sessions()` reports it. */
export type SleeveSessionState =
  | 'established'
  | 'handshaking'
  /** Its handshakes fail here or ours fail there: another password. */
  | 'wrongPassword'
  /** This sleeve encrypts; the peer sends plaintext (no password there). */
  | 'plaintextPeer'
  /** This sleeve has no password; the peer sends encrypted datagrams (it has one). */
  | 'encryptedPeer'
  | 'off';

export interface SleeveSession {
  peerId: bigint;
  state: SleeveSessionState;
  established: boolean;
  wrongPassword: boolean;
  /** Milliseconds since the last completed handshake with the peer. */
  handshakeAgeMs?: number;
}

/**
 * One peer's traffic through the sleeve since the engine started: frames (a flood to n peers
 * counts on each), datagrams and their bytes as they crossed the socket, both ways.
 */
export interface SleevePeerTraffic {
  peerId: bigint;
  framesOut: bigint;
  datagramsOut: bigint;
  bytesOut: bigint;
  framesIn: bigint;
  datagramsIn: bigint;
  bytesIn: bigint;
}

// ---------------------------------------------------------------------------------------------
// The native binding (its generated declaration, binding.d.ts, is written by `npm run build`).

interface NativeSleeve {
  applyConfig(config: SleeveConfig): void;
  start(): void;
  stop(): void;
  stats(): SleeveStats;
  sessions(): SleeveSession[];
  peerTraffic(): SleevePeerTraffic[];
}

export interface SleeveBinding {
  Sleeve: new (config: SleeveConfig) => NativeSleeve;
}

/** `sleeve.linux-x64-gnu.node` and the like, as `napi build --platform` names it. */
export function binaryName(platform: string = process.platform, arch: string = process.arch, musl = isMusl()): string {
  const abi = platform === 'linux' ? (musl ? '-musl' : '-gnu') : '';
  return `sleeve.${platform}-${arch}${abi}.node`;
}

function isMusl(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return !header?.glibcVersionRuntime;
}

let cached: SleeveBinding | undefined;

/** Loads the addon from `dir` (default: this package). Cached for the default directory. */
export function loadBinding(dir: string = __dirname): SleeveBinding {
  if (dir === __dirname && cached) return cached;
  const file = join(dir, binaryName());
  if (!existsSync(file)) {
    throw new SleeveLoadError(`${file} is missing: run \`npm run build\` in native/sleeve`);
  }
  let binding: SleeveBinding;
  try {
    binding = createRequire(__filename)(file) as SleeveBinding;
  } catch (cause) {
    throw new SleeveLoadError(`cannot load ${file}`, { cause });
  }
  if (dir === __dirname) cached = binding;
  return binding;
}

/** True when the addon for this platform has been built. */
export function bindingAvailable(dir: string = __dirname): boolean {
  return existsSync(join(dir, binaryName()));
}

// ---------------------------------------------------------------------------------------------
// The wrapper.

export function parseSleeveConfig(input: SleeveConfigInput): SleeveConfig {
  const r = SleeveConfigSchema.safeParse(input);
  if (!r.success) {
    throw new SleeveConfigError(`invalid sleeve config: ${z.prettifyError(r.error)}`, { cause: r.error });
  }
  return r.data;
}

/** napi errors carry `code` = the napi status; InvalidArg is a config problem. */
function fromNative(operation: SleeveRuntimeError['operation'], cause: unknown): Error {
  const message = cause instanceof Error ? cause.message : String(cause);
  if ((cause as { code?: unknown } | null)?.code === 'InvalidArg') {
    return new SleeveConfigError(message, { cause });
  }
  return new SleeveRuntimeError(operation, message, { cause });
}

/**
 * The sleeve data path: one TAP per network and one UDP socket to peer routers.
 * `stop()` joins the packet threads (it blocks for at most ~50 ms).
 */
export class Sleeve {
  readonly #native: NativeSleeve;

  constructor(config: SleeveConfigInput, binding: SleeveBinding = loadBinding()) {
    const parsed = parseSleeveConfig(config);
    try {
      this.#native = new binding.Sleeve(parsed);
    } catch (cause) {
      throw new SleeveConfigError(cause instanceof Error ? cause.message : String(cause), { cause });
    }
  }

  /** Validates and swaps in a new config atomically; on failure the old one stays. */
  applyConfig(config: SleeveConfigInput): void {
    const parsed = parseSleeveConfig(config);
    this.#call('applyConfig', () => this.#native.applyConfig(parsed));
  }

  start(): void {
    this.#call('start', () => this.#native.start());
  }

  /** Idempotent. */
  stop(): void {
    this.#call('stop', () => this.#native.stop());
  }

  stats(): SleeveStats {
    return this.#call('stats', () => this.#native.stats());
  }

  /** Each configured peer's encryption state while running (empty when stopped, and for a
   * moment after start while the receive thread publishes it). */
  sessions(): SleeveSession[] {
    return this.#call('sessions', () => this.#native.sessions());
  }

  /** Each configured peer's traffic while running (empty when stopped). */
  peerTraffic(): SleevePeerTraffic[] {
    return this.#call('peerTraffic', () => this.#native.peerTraffic());
  }

  #call<T>(operation: SleeveRuntimeError['operation'], f: () => T): T {
    try {
      return f();
    } catch (cause) {
      throw fromNative(operation, cause);
    }
  }
}
