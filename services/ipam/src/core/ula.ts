import { CidrString, HostName } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { Cidr, cidrOf, containsCidr, formatCidr, parseCidr } from '@weave/netaddr';
import { z } from 'zod';

/**
 * The mesh's IPv6 unique local prefix (RFC 4193), from which IPv6 networks created without
 * `--subnet` get their /64. One per mesh, not per host: every host must hand out /64s of the same
 * /48, or two hosts' default networks could not be told apart from a user's subnets, and the
 * "no overlap" rule would have nothing to compare. Pure: the random bytes come from the caller.
 */

/** fd00::/8: locally assigned ULAs (fc00::/8 is reserved for a central authority that never came). */
const LOCAL_ULA = parseCidr('fd00::/8');
export const ULA_PREFIX = 48;
/** One /64 per network: SLAAC-sized, and what users of Docker IPv6 expect. */
export const ULA_SUBNET_PREFIX = 64;
const GLOBAL_ID_BYTES = 5;

/** fd00::/8 followed by the 40-bit global id taken from `random` (RFC 4193 §3.2.2: random, not derived). */
export function ulaOf(random: Uint8Array): Cidr {
  if (random.length < GLOBAL_ID_BYTES) throw new InvalidRequestError(`a ULA global id needs ${GLOBAL_ID_BYTES} random bytes, got ${random.length}`);
  let globalId = 0n;
  for (const b of random.subarray(0, GLOBAL_ID_BYTES)) globalId = (globalId << 8n) | BigInt(b);
  return cidrOf({ family: 6, value: LOCAL_ULA.base | (globalId << 80n) }, ULA_PREFIX);
}

/** Why `c` is not a locally assigned ULA /48, or null. */
export function ulaProblem(c: Cidr): string | null {
  if (c.family !== 6 || c.prefix !== ULA_PREFIX || !containsCidr(LOCAL_ULA, c)) return `${formatCidr(c)} is not a /${ULA_PREFIX} in ${formatCidr(LOCAL_ULA)}`;
  return null;
}

function isUla(text: string): boolean {
  try {
    return ulaProblem(parseCidr(text)) === null;
  } catch {
    return false;
  }
}

/** The KV record (bucket weave-ipam-mesh, key `ula`): written once, by whichever host asked first. */
export const UlaRecord = z.object({
  // zod runs this check also after CidrString's failed, so it parses for itself.
  prefix: CidrString.refine((s) => isUla(s), { message: `must be a /${ULA_PREFIX} in fd00::/8` }),
  createdBy: HostName,
  createdAt: z.iso.datetime(),
});
export type UlaRecord = z.output<typeof UlaRecord>;
