import { CidrString, DockerId, IpString, IpWithPrefix } from '@weave/contracts';
import { z } from 'zod';
import type { DockerNetworkView } from './plan';

/**
 * What reconciliation reads of `GET /networks/<id>`. Strict where acting on a misread would
 * release something in use: every endpoint must carry a valid id, and its addresses must parse
 * (or be empty), or the whole pass fails rather than proceed on a partial view.
 */
const Address = z.union([z.literal(''), IpWithPrefix]);
export const EndpointsInspect = z.looseObject({
  Id: DockerId,
  Name: z.string(),
  Driver: z.string(),
  IPAM: z.looseObject({
    Driver: z.string().optional(),
    Config: z
      .array(
        z.looseObject({
          Subnet: CidrString.optional(),
          Gateway: z.union([z.literal(''), IpString]).optional(),
          AuxiliaryAddresses: z.record(z.string(), IpString).nullish(),
        }),
      )
      .nullish(),
  }),
  /** Keyed by container id, or `ep-<endpoint id>` for an endpoint without a container yet. */
  Containers: z
    .record(z.string(), z.looseObject({ Name: z.string().optional(), EndpointID: DockerId, IPv4Address: Address.optional(), IPv6Address: Address.optional() }))
    .nullish(),
});
export type EndpointsInspect = z.output<typeof EndpointsInspect>;

/** Docker's inspection as reconciliation's view: bare addresses, gateways and aux together. */
export function networkView(i: EndpointsInspect): DockerNetworkView {
  const configs = i.IPAM.Config ?? [];
  const bare = (a: string | undefined): string[] => (a ? [a.split('/')[0]!] : []);
  return {
    id: i.Id,
    name: i.Name,
    driver: i.Driver,
    ipamDriver: i.IPAM.Driver ?? null,
    subnets: configs.flatMap((c) => (c.Subnet ? [c.Subnet] : [])),
    reserved: configs.flatMap((c) => [...(c.Gateway ? [c.Gateway] : []), ...Object.values(c.AuxiliaryAddresses ?? {})]),
    endpoints: Object.entries(i.Containers ?? {}).map(([key, c]) => ({
      endpointId: c.EndpointID,
      addresses: [...bare(c.IPv4Address), ...bare(c.IPv6Address)],
      // `ep-<endpoint id>` for an endpoint without a container.
      containerId: DockerId.safeParse(key).success ? key : null,
      container: c.Name ?? '',
    })),
  };
}
