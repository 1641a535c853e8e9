/**
 * Kernel names of everything netwire creates. Linux allows 15 characters per interface name, so
 * each is a 3-letter role prefix plus the first 11 hex digits of the Docker id (44 bits: a
 * collision between two live networks or endpoints on one host is not a practical concern).
 * The prefixes are also how reconcile recognises our leftovers, and nothing else.
 */
export const Prefix = { bridge: 'wvb', hostVeth: 'wvh', containerVeth: 'wvc' } as const;
export type LinkRole = keyof typeof Prefix;

const ID_CHARS = 11;
const OURS = /^wv([bhc])([0-9a-f]{11})$/;

export const bridgeName = (networkId: string): string => Prefix.bridge + shortId(networkId);
export const hostVethName = (endpointId: string): string => Prefix.hostVeth + shortId(endpointId);
export const containerVethName = (endpointId: string): string => Prefix.containerVeth + shortId(endpointId);

/** The role of a link netwire would have named so, or null for anything that is not ours. */
export function roleOf(name: string): LinkRole | null {
  const m = OURS.exec(name);
  if (!m) return null;
  return m[1] === 'b' ? 'bridge' : m[1] === 'h' ? 'hostVeth' : 'containerVeth';
}

function shortId(id: string): string {
  if (!/^[0-9a-f]{11,}$/.test(id)) throw new TypeError(`not a Docker id: ${JSON.stringify(id)}`);
  return id.slice(0, ID_CHARS);
}
