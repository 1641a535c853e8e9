import { CLASS_IN, DnsQuery, Rcode, RecordType } from '@weave/dns';
import type { Cidr } from '@weave/netaddr';
import { inOwnDomain, NameIndex } from './names';

/**
 * How long a resolver may keep an answer. Short: a container that goes away, or moves to another
 * address after its host was lost, must stop being answered within seconds.
 */
export const ANSWER_TTL_S = 5;

export type Decision =
  | { kind: 'answer'; rcode: Rcode; authoritative: true; answers: Array<{ address: string; ttl: number }> }
  | { kind: 'forward' };

/**
 * The answer to one query from a container of the network with `subnets`. A name the mesh knows
 * gets its addresses of the asked family (none for other types: the name exists, so NOERROR, and
 * the client asks again for the type it needs); an unknown name in weave.local does not exist;
 * everything else (other names, other classes, reverse lookups) goes to the host's resolvers.
 */
export function decide(q: DnsQuery, subnets: readonly Cidr[], names: NameIndex): Decision {
  const { name, type } = q.question;
  if (q.question.class !== CLASS_IN) return { kind: 'forward' };
  const addresses = names.lookup(name, subnets);
  if (addresses.length > 0) {
    const wanted = type === RecordType.A ? addresses.filter((a) => !a.includes(':')) : type === RecordType.AAAA ? addresses.filter((a) => a.includes(':')) : [];
    return { kind: 'answer', rcode: Rcode.noError, authoritative: true, answers: wanted.map((address) => ({ address, ttl: ANSWER_TTL_S })) };
  }
  if (inOwnDomain(name)) return { kind: 'answer', rcode: Rcode.nxDomain, authoritative: true, answers: [] };
  return { kind: 'forward' };
}
