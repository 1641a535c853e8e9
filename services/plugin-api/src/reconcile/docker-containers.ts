import { z } from 'zod';
import type { ContainerView } from './readdress-plan';

/** What moving a container off an address asks of Docker, and nothing more. */
export interface DockerContainers {
  /** The container and its networks; null when Docker has no such container. */
  container(id: string): Promise<ContainerView | null>;
  /** `POST /networks/<id>/disconnect` with Force. */
  disconnect(networkId: string, containerId: string): Promise<void>;
  /** `POST /networks/<id>/connect` with the endpoint's configuration. */
  connect(networkId: string, containerId: string, endpointConfig: Record<string, unknown>): Promise<void>;
}

const strings = z.array(z.string()).nullish().transform((a) => a ?? []);

/** What `GET /containers/<id>/json` says that a move needs (Docker 20.10 through 28). */
export const ContainerInspect = z.looseObject({
  Id: z.string(),
  Name: z.string(),
  NetworkSettings: z.looseObject({
    Networks: z
      .record(
        z.string(),
        z.looseObject({
          NetworkID: z.string(),
          EndpointID: z.string().nullish(),
          IPAddress: z.string().nullish(),
          IPAMConfig: z.looseObject({ IPv4Address: z.string().optional(), IPv6Address: z.string().optional() }).nullish(),
          Aliases: strings,
          Links: strings,
          DriverOpts: z.record(z.string(), z.string()).nullish(),
        }),
      )
      .nullish(),
  }),
});

export function containerView(raw: unknown): ContainerView {
  const i = ContainerInspect.parse(raw);
  const networks: ContainerView['networks'] = {};
  for (const n of Object.values(i.NetworkSettings.Networks ?? {})) {
    // Empty strings where the user chose nothing (Docker 20.10 writes `"IPv4Address": ""`).
    const [v4, v6] = [n.IPAMConfig?.IPv4Address, n.IPAMConfig?.IPv6Address];
    const chosen = { ...(v4 ? { IPv4Address: v4 } : {}), ...(v6 ? { IPv6Address: v6 } : {}) };
    networks[n.NetworkID] = {
      endpointId: n.EndpointID ?? '',
      address: n.IPAddress || null,
      ipamConfig: v4 || v6 ? chosen : null,
      aliases: n.Aliases,
      links: n.Links,
      driverOpts: n.DriverOpts ?? null,
    };
  }
  return { id: i.Id, name: i.Name.replace(/^\//, ''), networks };
}
