import type { ServiceName } from './rpc';

/** Every NATS subject the project uses is built here and nowhere else. */
export const Subjects = {
  rpc: (host: string, service: ServiceName, method: string) => `weave.rpc.${host}.${service}.${method}`,
  rpcAll: (host: string, service: ServiceName) => `weave.rpc.${host}.${service}.*`,
  event: (host: string, service: ServiceName, kind: string) => `weave.events.${host}.${service}.${kind}`,
  allEvents: 'weave.events.>',
  presence: (host: string) => `weave.presence.${host}`,
  allPresence: 'weave.presence.*',
} as const;

/** JetStream KV buckets; one owner service each. */
export const Buckets = {
  ipamPools: 'weave-ipam-pools',
  ipamBlocks: 'weave-ipam-blocks',
  ipamLeases: 'weave-ipam-leases',
  /** One record per ipam host: its epoch and lease (see the ipam's core/hosts.ts). */
  ipamHosts: 'weave-ipam-hosts',
  /** Settings of the whole mesh that ipam chooses once: the IPv6 ULA prefix (see the ipam's core/ula.ts). */
  ipamMesh: 'weave-ipam-mesh',
  netwire: 'weave-netwire',
  catalogue: 'weave-networks',
  /** plugin-api's containers being moved off addresses other hosts hold (see Readdress). */
  readdress: 'weave-readdress',
  /** plugin-api's names of its host's containers, for every host's DNS (see DnsRecord). */
  dns: 'weave-dns',
} as const;

/**
 * JetStream streams besides the KV buckets'. `events` keeps a bounded history of every event for
 * `weave events --since`: whatever is older than maxAgeMs, or beyond maxBytes / maxMsgs, is
 * dropped oldest first. netwire creates it at start on every host with the same settings
 * (replicas: WEAVE_KV_REPLICAS), so a fresh install has it and a second host finds it made.
 */
export const Streams = {
  events: { name: 'WEAVE_EVENTS', subjects: [Subjects.allEvents], maxAgeMs: 24 * 3600_000, maxBytes: 64 * 1024 * 1024, maxMsgs: 200_000 },
} as const;
