import { request } from 'node:http';
import { CidrString, DockerId } from '@weave/contracts';
import { UnavailableError } from '@weave/errors';
import { z } from 'zod';
import type { DockerEndpoints, DockerNetworkView } from '../reconcile/plan';
import { EndpointsInspect, networkView } from '../reconcile/docker-view';
import { containerView, DockerContainers } from '../reconcile/docker-containers';
import type { ContainerView } from '../reconcile/readdress-plan';
import type { AttachmentView } from '../ports';
import { DNS_EVENT_FILTERS, DnsAttachment, DnsDocker, inspectedAttachments, isDnsChange, listedAttachments, RunningContainers } from '../dns/docker-attachments';
import { ActiveEntry, LocalNetwork, REPLICA_LABEL } from './plan';

/** What the catalogue asks of the local Docker engine, and nothing more. */
export interface DockerEngine {
  /** This engine's networks of the given driver. */
  networks(driver: string): Promise<LocalNetwork[]>;
  createNetwork(driver: string, e: ActiveEntry): Promise<void>;
  removeNetwork(name: string): Promise<void>;
  /** Calls `onChange` on every network create/destroy of `driver`; returns a stop function. */
  watchNetworks(driver: string, onChange: (e: { action: string; name: string }) => void): () => void;
}

const Inspect = z.looseObject({
  Name: z.string(),
  Created: z.string(),
  Driver: z.string(),
  EnableIPv6: z.boolean().optional(),
  Internal: z.boolean().optional(),
  IPAM: z.looseObject({ Config: z.array(z.looseObject({ Subnet: z.string().optional(), IPRange: z.string().optional(), Gateway: z.string().optional() })).nullish() }),
  Options: z.record(z.string(), z.string()).nullish(),
  Labels: z.record(z.string(), z.string()).nullish(),
  Containers: z.record(z.string(), z.unknown()).nullish(),
});
const Listed = z.array(z.looseObject({ Id: z.string(), Driver: z.string(), IPAM: z.looseObject({ Driver: z.string().optional() }).nullish() }));
/** `GET /networks` as ipamNetworks reads it: the list carries each network's IPAM config. */
const ListedIpam = z.array(
  z.looseObject({
    Id: z.string(),
    Name: z.string(),
    Driver: z.string(),
    IPAM: z.looseObject({ Driver: z.string().optional(), Config: z.array(z.looseObject({ Subnet: z.string().optional() })).nullish() }).nullish(),
  }),
);
/** `GET /networks` as the published-ports check reads it. */
const ListedFlags = z.array(z.looseObject({ Id: z.string(), Name: z.string(), Internal: z.boolean().optional() }));
const ListedContainers = z.array(
  z.looseObject({ Id: z.string(), State: z.string(), NetworkSettings: z.looseObject({ Networks: z.record(z.string(), z.unknown()).nullish() }).nullish() }),
);
/** One line of `GET /events`; Docker's attributes are all strings (labels, exit codes). */
const EventLine = z.looseObject({
  Type: z.string(),
  Action: z.string(),
  Actor: z.looseObject({ ID: z.string().optional(), Attributes: z.record(z.string(), z.string()).nullish() }).nullish(),
});
/** Docker's event filters, as `GET /events?filters=` takes them. */
export interface DockerEventFilters {
  type?: string[];
  event?: string[];
}
export interface DockerEvent {
  type: string;
  action: string;
  actorId: string;
  attributes: Record<string, string>;
}
/**
 * A network's gateway as the catalogue keeps it (an address alone), or null. Docker 20.10 keeps an
 * IPv6 gateway it got from the IPAM with its prefix length (`fd00:1::1/64`), an IPv4 one without:
 * taken as it is, every IPv6 network's entry failed the catalogue's schema and reached no other host.
 */
export const bareGateway = (g: string | undefined): string | null => (g ? g.replace(/\/\d{1,3}$/, '') : null);

/** One of our networks in that list: strict, since ipam acts on it (an id or subnet that does not parse fails the listing). */
const IpamNetwork = z.object({ id: DockerId, name: z.string().min(1), subnets: z.array(CidrString) });
export type IpamNetwork = z.output<typeof IpamNetwork>;

/**
 * The Docker Engine API over its unix socket (unversioned paths: 20.10 through 28 answer them).
 * Also what reconciliation reads of Docker (DockerEndpoints).
 */
export class SocketDockerEngine implements DockerEngine, DockerEndpoints, DockerContainers, DnsDocker {
  constructor(private readonly socketPath = '/var/run/docker.sock') {}

  async networks(driver: string): Promise<LocalNetwork[]> {
    const listed = await this.listed(driver);
    const out: LocalNetwork[] = [];
    for (const n of listed) {
      const i = Inspect.parse(await this.call('GET', `/networks/${n.Id}`));
      out.push({
        name: i.Name,
        created: new Date(i.Created).toISOString(),
        subnets: (i.IPAM.Config ?? []).filter((c) => c.Subnet).map((c) => ({ subnet: c.Subnet!, ipRange: c.IPRange || null, gateway: bareGateway(c.Gateway) })),
        ipv6: i.EnableIPv6 ?? false,
        internal: i.Internal ?? false,
        options: i.Options ?? {},
        labels: i.Labels ?? {},
        containers: Object.keys(i.Containers ?? {}).length,
        replicaOf: i.Labels?.[REPLICA_LABEL] ?? null,
      });
    }
    return out;
  }

  /**
   * Networks of `driver`, and networks of other drivers that use it as their IPAM driver
   * (`-d bridge --ipam-driver weave`): their pools and leases are ours too. A network that goes
   * between the listing and its inspection has no endpoints: it is left out.
   */
  async endpoints(driver: string): Promise<DockerNetworkView[]> {
    const all = Listed.parse(await this.call('GET', '/networks'));
    const out: DockerNetworkView[] = [];
    for (const n of all.filter((l) => l.Driver === driver || l.IPAM?.Driver === driver)) {
      const raw = await this.call('GET', `/networks/${n.Id}`).catch((e: unknown) => {
        if (e instanceof DockerApiError && e.status === 404) return undefined;
        throw e;
      });
      if (raw !== undefined) out.push(networkView(EndpointsInspect.parse(raw)));
    }
    return out;
  }

  /**
   * This engine's networks on `driver`'s IPAM (whatever their network driver) with their subnets,
   * in one call; fails after `timeoutMs` rather than hold up the plugin call that asks.
   */
  async ipamNetworks(driver: string, timeoutMs: number): Promise<IpamNetwork[]> {
    const all = ListedIpam.parse(await this.call('GET', '/networks', undefined, timeoutMs));
    return all
      .filter((n) => n.IPAM?.Driver === driver)
      .map((n) => IpamNetwork.parse({ id: n.Id, name: n.Name, subnets: (n.IPAM?.Config ?? []).flatMap((c) => (c.Subnet ? [c.Subnet] : [])) }));
  }

  async container(id: string): Promise<ContainerView | null> {
    const raw = await this.call('GET', `/containers/${encodeURIComponent(id)}/json`).catch((e: unknown) => {
      if (e instanceof DockerApiError && e.status === 404) return null;
      throw e;
    });
    return raw === null ? null : containerView(raw);
  }

  /**
   * One listing of running containers, and an inspection of each one on our networks whose
   * aliases the listing leaves out (all of them on Docker 20.10). A container gone by its
   * inspection has no endpoints.
   */
  async dnsAttachments(driver: string): Promise<DnsAttachment[]> {
    const ours = new Set((await this.listed(driver)).map((n) => n.Id));
    const out: DnsAttachment[] = [];
    for (const c of RunningContainers.parse(await this.call('GET', '/containers/json'))) {
      const listed = listedAttachments(c, ours);
      if (listed) {
        out.push(...listed);
        continue;
      }
      const raw = await this.call('GET', `/containers/${encodeURIComponent(c.Id)}/json`).catch((e: unknown) => {
        if (e instanceof DockerApiError && e.status === 404) return null;
        throw e;
      });
      if (raw !== null) out.push(...inspectedAttachments(raw, ours));
    }
    return out;
  }

  watchDnsChanges(driver: string, onEvent: (e: { type: string; action: string }) => void): () => void {
    return this.watchEvents(DNS_EVENT_FILTERS, (e) => {
      if (isDnsChange(driver, e)) onEvent(e);
    });
  }

  async disconnect(networkId: string, containerId: string): Promise<void> {
    await this.call('POST', `/networks/${encodeURIComponent(networkId)}/disconnect`, { Container: containerId, Force: true });
  }

  async connect(networkId: string, containerId: string, endpointConfig: Record<string, unknown>): Promise<void> {
    await this.call('POST', `/networks/${encodeURIComponent(networkId)}/connect`, { Container: containerId, EndpointConfig: endpointConfig });
  }

  private async listed(driver: string): Promise<z.output<typeof Listed>> {
    const listed = Listed.parse(await this.call('GET', `/networks?filters=${encodeURIComponent(JSON.stringify({ driver: [driver] }))}`));
    return listed.filter((l) => l.Driver === driver);
  }

  async createNetwork(driver: string, e: ActiveEntry): Promise<void> {
    await this.call('POST', '/networks/create', {
      Name: e.name,
      Driver: driver,
      CheckDuplicate: true,
      Internal: e.internal,
      EnableIPv6: e.ipv6,
      Options: e.options,
      Labels: { ...e.labels, [REPLICA_LABEL]: e.createdAt },
      // Aux addresses are left out: they are reserved mesh-wide already, and asking again here
      // would find them taken.
      IPAM: { Driver: driver, Config: e.subnets.map((s) => ({ Subnet: s.subnet, ...(s.ipRange ? { IPRange: s.ipRange } : {}), ...(s.gateway ? { Gateway: s.gateway } : {}) })) },
    });
  }

  async removeNetwork(name: string): Promise<void> {
    await this.call('DELETE', `/networks/${encodeURIComponent(name)}`);
  }

  /** Every network with its internal flag, and the containers on one (any state), in two calls. */
  async networksAndContainers(networkId: string, timeoutMs: number): Promise<AttachmentView> {
    const networks = ListedFlags.parse(await this.call('GET', '/networks', undefined, timeoutMs)).map((n) => ({ id: n.Id, name: n.Name, internal: n.Internal ?? false }));
    // A container not started yet lists its networks by the name it was given them by.
    const name = networks.find((n) => n.id === networkId)?.name;
    const filters = encodeURIComponent(JSON.stringify({ network: [networkId, ...(name ? [name] : [])] }));
    const listed = ListedContainers.parse(await this.call('GET', `/containers/json?all=1&filters=${filters}`, undefined, timeoutMs));
    return { networks, containers: listed.map((c) => ({ id: c.Id, state: c.State, networks: Object.keys(c.NetworkSettings?.Networks ?? {}) })) };
  }

  watchNetworks(driver: string, onChange: (e: { action: string; name: string }) => void): () => void {
    return this.watchEvents({ type: ['network'], event: ['create', 'destroy'] }, (e) => {
      const name = e.attributes['name'];
      if (e.attributes['type'] === driver && name) onChange({ action: e.action, name });
    });
  }

  /**
   * Calls `onEvent` for every event of Docker's stream that passes `filters` (Docker's own:
   * values of one key are alternatives, keys must all match); returns a stop function.
   */
  watchEvents(filters: DockerEventFilters, onEvent: (e: DockerEvent) => void): () => void {
    const query = encodeURIComponent(JSON.stringify(filters));
    let stopped = false;
    let current: ReturnType<typeof request> | null = null;
    // The stream ends when dockerd restarts; it is opened again a second later. Events missed
    // in between are for each watcher's periodic pass to catch.
    const open = (): void => {
      if (stopped) return;
      let buf = '';
      const again = (): void => {
        if (!current) return;
        current = null;
        setTimeout(open, 1000).unref();
      };
      current = request({ socketPath: this.socketPath, path: `/events?filters=${query}`, method: 'GET' }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            const event = parseEvent(buf.slice(0, nl));
            buf = buf.slice(nl + 1);
            if (event) onEvent(event);
          }
        });
        res.on('end', again);
      });
      current.on('error', again);
      current.end();
    };
    open();
    return () => {
      stopped = true;
      current?.destroy();
    };
  }

  private call(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<unknown> {
    const text = body === undefined ? '' : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        { socketPath: this.socketPath, path, method, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } },
        (res) => {
          let data = '';
          res.on('data', (c) => (data += c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(data ? JSON.parse(data) : null);
            const message = (() => { try { return (JSON.parse(data) as { message?: string }).message ?? data; } catch { return data; } })();
            reject(new DockerApiError(method, path, status, message));
          });
        },
      );
      req.on('error', (e) => reject(new UnavailableError(`cannot reach the Docker engine at ${this.socketPath}: ${e.message}`, { cause: e })));
      if (timeoutMs !== undefined) {
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`Docker ${method} ${path} did not answer within ${timeoutMs} ms`)));
      }
      req.end(text);
    });
  }
}

/** The engine refused a call; `status` tells a missing network (404) from a busy one (403/409). */
export class DockerApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly detail: string,
  ) {
    super(`Docker ${method} ${path} answered ${status}: ${detail.trim()}`);
    this.name = 'DockerApiError';
  }
}

/** One line of Docker's event stream; null for a line that is not an event. */
function parseEvent(line: string): DockerEvent | null {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return null;
  }
  const e = EventLine.safeParse(json);
  return e.success ? { type: e.data.Type, action: e.data.Action, actorId: e.data.Actor?.ID ?? '', attributes: e.data.Actor?.Attributes ?? {} } : null;
}
