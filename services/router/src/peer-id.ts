import { createHash } from 'node:crypto';

/**
 * A host's id in the sleeve header: 64 bits of SHA-256 of its name. Every router derives the
 * same id for a host with no coordination, and a datagram claiming another host's id from the
 * wrong address is dropped by the sleeve. Never 0, which the sleeve reserves.
 */
export function peerIdOf(host: string): bigint {
  const id = createHash('sha256').update(host).digest().readBigUInt64BE(0);
  return id === 0n ? 1n : id;
}
