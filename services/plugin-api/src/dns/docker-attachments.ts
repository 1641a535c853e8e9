import { z } from 'zod';

/** One running container's endpoint on one of our networks, as Docker tells it. Not validated yet: the planner does that. */
export interface DnsAttachment {
  containerId: string;
  /** Without Docker's leading `/`. */
  containerName: string;
  /** The Docker network's name. */
  network: string;
  endpointId: string;
  /** The endpoint's aliases (Docker 20.10 adds the short container id), and its DNSNames where Docker has them (25+). */
  aliases: string[];
  /** IPv4 then IPv6, bare (Docker gives them without prefix). */
  addresses: string[];
}

/** What the DNS publisher asks of Docker, and nothing more. */
export interface DnsDocker {
  /** Every endpoint of this engine's running containers on networks of `driver`. */
  dnsAttachments(driver: string): Promise<DnsAttachment[]>;
  /** Calls `onEvent` on events that can change the names or addresses on `driver`'s networks; returns a stop function. */
  watchDnsChanges(driver: string, onEvent: (e: { type: string; action: string }) => void): () => void;
}

/** The Docker events after which the names may have changed, as Docker filters them (see isDnsChange). */
export const DNS_EVENT_FILTERS = { type: ['network', 'container'], event: ['connect', 'disconnect', 'rename', 'die', 'destroy', 'start'] };

/**
 * Docker's filters match each key on its own, so `network destroy` passes DNS_EVENT_FILTERS too;
 * and a network event says its driver while a container event does not say its networks.
 */
export function isDnsChange(driver: string, e: { type: string; action: string; attributes: Record<string, string> }): boolean {
  if (e.type === 'container') return true;
  return e.type === 'network' && (e.action === 'connect' || e.action === 'disconnect') && e.attributes['type'] === driver;
}

const strings = z.array(z.string()).nullish();

/** One network's entry of a container (`NetworkSettings.Networks.<network name>`), in the list and in the inspection alike. */
const EndpointSettings = z.looseObject({
  NetworkID: z.string(),
  EndpointID: z.string().nullish(),
  IPAddress: z.string().nullish(),
  GlobalIPv6Address: z.string().nullish(),
  // null in Docker 20.10's list even when the endpoint has aliases: only the inspection has them.
  Aliases: strings,
  DNSNames: strings,
});
const Networks = z.looseObject({ Networks: z.record(z.string(), EndpointSettings).nullish() });

/** `GET /containers/json`: running (and paused) containers only. */
export const RunningContainers = z.array(z.looseObject({ Id: z.string(), Names: strings, NetworkSettings: Networks.nullish() }));
type ListedContainer = z.output<typeof RunningContainers>[number];

/** `GET /containers/<id>/json`, for the aliases the list leaves out. */
export const InspectedContainer = z.looseObject({ Id: z.string(), Name: z.string(), State: z.looseObject({ Running: z.boolean() }).nullish(), NetworkSettings: Networks.nullish() });

interface Container {
  id: string;
  name: string;
  networks: Record<string, z.output<typeof EndpointSettings>>;
}

/** The listed container's endpoints on `ours` (network ids), or null if the list lacks their aliases. */
export function listedAttachments(c: ListedContainer, ours: ReadonlySet<string>): DnsAttachment[] | null {
  // Names holds the legacy links' names too (`/other/alias`); the container's own has one slash.
  const name = (c.Names ?? []).find((n) => /^\/[^/]+$/.test(n));
  const networks = c.NetworkSettings?.Networks ?? {};
  const on = Object.values(networks).filter((n) => ours.has(n.NetworkID));
  if (on.length === 0) return [];
  if (name === undefined || on.some((n) => !n.Aliases)) return null;
  return attachments({ id: c.Id, name, networks }, ours);
}

/** The inspected container's endpoints on `ours`; none when it stopped meanwhile. */
export function inspectedAttachments(raw: unknown, ours: ReadonlySet<string>): DnsAttachment[] {
  const c = InspectedContainer.parse(raw);
  if (c.State && !c.State.Running) return [];
  return attachments({ id: c.Id, name: c.Name, networks: c.NetworkSettings?.Networks ?? {} }, ours);
}

function attachments(c: Container, ours: ReadonlySet<string>): DnsAttachment[] {
  return Object.entries(c.networks).flatMap(([network, n]) =>
    ours.has(n.NetworkID) && n.EndpointID
      ? [
          {
            containerId: c.id,
            containerName: c.name.replace(/^\//, ''),
            network,
            endpointId: n.EndpointID,
            aliases: [...new Set([...(n.Aliases ?? []), ...(n.DNSNames ?? [])])],
            addresses: [n.IPAddress, n.GlobalIPv6Address].filter((a): a is string => !!a),
          },
        ]
      : [],
  );
}
