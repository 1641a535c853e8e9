import { execFileSync } from 'node:child_process';
import type { NatsConnection } from '@nats-io/transport-node';
import { kvGet, kvKeys, openBucket } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { docker } from '@weave/docker-cli';
import { z } from 'zod';

/**
 * What one host holds, read from each authority separately so a test can compare them: Docker's
 * endpoints (`docker network inspect`), ipam's leases (its KV bucket), and the kernel's links.
 */

export interface DockerEndpoint {
  endpointId: string;
  container: string;
  /** Without the prefix length; "" when it has none. */
  ipv4: string;
}

const Inspected = z.array(
  z.looseObject({
    Id: z.string(),
    Containers: z.record(z.string(), z.looseObject({ Name: z.string(), EndpointID: z.string(), IPv4Address: z.string() })).nullish(),
  }),
);

/** The network's id and endpoints as Docker has them. */
export async function dockerEndpoints(network: string): Promise<{ networkId: string; endpoints: DockerEndpoint[] }> {
  const [n] = Inspected.parse(JSON.parse(await docker(['network', 'inspect', network])));
  if (!n) throw new Error(`docker network inspect ${network} returned nothing`);
  const endpoints = Object.values(n.Containers ?? {}).map((c) => ({ endpointId: c.EndpointID, container: c.Name, ipv4: c.IPv4Address.split('/')[0]! }));
  return { networkId: n.Id, endpoints };
}

const Lease = z.looseObject({ host: z.string(), kind: z.string(), time: z.string(), sticky: z.object({ mac: z.string(), releasedAt: z.string().optional() }).optional() });
/** `sticky`: the container's own MAC it sticks to, and since when it is kept for it (see ipam's core/sticky.ts). */
export type Lease = { address: string; kind: string; host: string; time: string; sticky?: { mac: string; releasedAt?: string } };

/** The leases in an IPv4 pool, from ipam's KV bucket (keys `v4-<base hex>-<prefix>.<address hex>`). */
export async function ipamLeases(nc: NatsConnection, subnet: string): Promise<Lease[]> {
  const [base, prefix] = subnet.split('/') as [string, string];
  const hex = (ip: string) => ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('');
  const kv = await openBucket(nc, Buckets.ipamLeases);
  const out: Lease[] = [];
  for (const key of await kvKeys(kv, `v4-${hex(base)}-${prefix}.*`)) {
    const v = await kvGet(kv, key, Lease);
    const h = key.split('.')[1]!;
    const address = [0, 2, 4, 6].map((i) => parseInt(h.slice(i, i + 2), 16)).join('.');
    if (v) out.push({ address, kind: v.value.kind, host: v.value.host, time: v.value.time, ...(v.value.sticky ? { sticky: v.value.sticky } : {}) });
  }
  return out;
}

export interface Link {
  name: string;
  kind: string | null;
  master: string | null;
  /** The weave host that tagged it (alias `weave:<host>`), or null. */
  owner: string | null;
}

const IpLinks = z.array(
  z.looseObject({ ifname: z.string(), master: z.string().optional(), ifalias: z.string().optional(), linkinfo: z.looseObject({ info_kind: z.string().optional() }).optional() }),
);

/** weave-named links (wvb bridges, wvh/wvc veth ends, wvs sleeve TAPs) in the host's namespace now. */
export function weaveLinkDetails(): Link[] {
  return IpLinks.parse(JSON.parse(execFileSync('ip', ['-j', '-d', 'link', 'show'], { encoding: 'utf8' })))
    .filter((l) => /^wv[bhcs]/.test(l.ifname))
    .map((l) => ({
      name: l.ifname,
      kind: l.linkinfo?.info_kind ?? null,
      master: l.master ?? null,
      owner: l.ifalias?.startsWith('weave:') ? l.ifalias.slice('weave:'.length) : null,
    }));
}
