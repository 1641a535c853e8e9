import { DNS_DOMAIN, DnsRecord } from '@weave/contracts';
import { Cidr, contains, parseCidr, parseIp } from '@weave/netaddr';

/**
 * The mesh's container names, looked up for one network. A network sees only addresses inside
 * its own subnets: two networks can hold containers of the same name, and a container on one
 * must not learn the other's addresses (the same isolation as their frames).
 */
export class NameIndex {
  private readonly byName = new Map<string, DnsRecord[]>();

  constructor(records: Iterable<DnsRecord>) {
    for (const r of records) {
      for (const name of new Set(r.names)) {
        const list = this.byName.get(name);
        if (list) list.push(r);
        else this.byName.set(name, [r]);
      }
    }
  }

  /** The addresses of `name` (a bare or a weave.local name) within `subnets`, sorted; [] when none. */
  lookup(name: string, subnets: readonly Cidr[]): string[] {
    const records = this.byName.get(bareName(name)) ?? [];
    const out = new Set<string>();
    for (const r of records) {
      for (const a of r.addresses) {
        const ip = parseIp(a);
        if (subnets.some((s) => s.family === ip.family && contains(s, ip))) out.add(a);
      }
    }
    return [...out].sort();
  }
}

/** `web.weave.local` → `web`; other names as they are. */
export function bareName(name: string): string {
  const n = name.toLowerCase().replace(/\.$/, '');
  return n.endsWith(`.${DNS_DOMAIN}`) ? n.slice(0, -DNS_DOMAIN.length - 1) : n;
}

/** Whether weave DNS owns the name: an unknown one there is answered as not existing, not passed on. */
export const inOwnDomain = (name: string): boolean => {
  const n = name.toLowerCase().replace(/\.$/, '');
  return n === DNS_DOMAIN || n.endsWith(`.${DNS_DOMAIN}`);
};

export const subnetsOf = (pools: ReadonlyArray<{ pool: string }>): Cidr[] => pools.map((p) => parseCidr(p.pool));
