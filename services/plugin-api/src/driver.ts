import { AddressSpaces, DockerOption, DockerPoolView, DockerPortBinding, ipamRpc, IpamDriver, NetworkDriver, netwireRpc, NetworkSpec, OptionBool, WeaveOption } from '@weave/contracts';
import type { RpcClient } from '@weave/bus';
import { InvalidRequestError } from '@weave/errors';
import { z } from 'zod';
import { portBindings, portRequests } from './ports';
import { requestedMac, userMac } from './sticky-macs';

/**
 * Docker's plugin methods mapped onto our services. Each entry names the interface (which decides
 * whether errors travel as `Err` or `Error`), the schema its body must satisfy, and what to do.
 * This module holds no state: the ipam and netwire services own it.
 */
export type Iface = 'Plugin' | 'NetworkDriver' | 'IpamDriver';

export interface Route {
  iface: Iface;
  /** Null for calls Docker sends with an empty body. */
  body: z.ZodType | null;
  handle: (body: any) => Promise<unknown>;
}

export interface Backends {
  ipam: RpcClient<typeof ipamRpc>;
  netwire: RpcClient<typeof netwireRpc>;
  /**
   * This host's Docker networks on our IPAM, sent along with RequestPool (for a given subnet) and
   * ReleasePool, which name no network (see dockerPoolView). Without it ipam decides alone.
   */
  dockerPools?: () => Promise<DockerPoolView | null>;
  /**
   * Why a container that asks to publish ports may not join an internal network (it has no other
   * network to publish them through), or null (see internalPortsCheck). Without it, it may.
   */
  internalPorts?: (networkId: string, bindings: DockerPortBinding[]) => Promise<string | null>;
  /**
   * Addresses that stick to a container's own MAC (see sticky-macs.ts): with it, Docker is asked
   * for each endpoint's MAC (RequiresMACAddress), RequestAddress passes it on to ipam, and
   * CreateEndpoint calls it for each address of an endpoint whose MAC the user gave. Without it
   * Docker sends no MAC, and netwire makes one from the address.
   */
  sticky?: (address: string, mac: string) => Promise<void>;
}

const Empty = {};

export function routes({ ipam, netwire, dockerPools, internalPorts, sticky }: Backends): Record<string, Route> {
  const docker = async (): Promise<{ docker?: DockerPoolView | null }> => (dockerPools ? { docker: await dockerPools() } : {});
  const nd = <K extends keyof typeof NetworkDriver>(m: K, handle: (b: z.output<(typeof NetworkDriver)[K]>) => Promise<unknown>): [string, Route] =>
    [`NetworkDriver.${m}`, { iface: 'NetworkDriver', body: NetworkDriver[m], handle }];
  const id = <K extends keyof typeof IpamDriver>(m: K, handle: (b: z.output<(typeof IpamDriver)[K]>) => Promise<unknown>): [string, Route] =>
    [`IpamDriver.${m}`, { iface: 'IpamDriver', body: IpamDriver[m], handle }];
  const constant = (iface: Iface, name: string, reply: unknown): [string, Route] =>
    [`${iface}.${name}`, { iface, body: null, handle: async () => reply }];

  return Object.fromEntries([
    constant('Plugin', 'Activate', { Implements: ['NetworkDriver', 'IpamDriver'] }),
    // "local": a legacy plugin with "global" scope is refused without swarm on 20.10; the mesh
    // keeps networks consistent across hosts itself.
    constant('NetworkDriver', 'GetCapabilities', { Scope: 'local' }),
    // No request replay: our state is persistent, and a replayed static request would conflict.
    constant('IpamDriver', 'GetCapabilities', { RequiresMACAddress: sticky !== undefined, RequiresRequestReplay: false }),
    constant('IpamDriver', 'GetDefaultAddressSpaces', {
      LocalDefaultAddressSpace: AddressSpaces.local,
      GlobalDefaultAddressSpace: AddressSpaces.global,
    }),

    id('RequestPool', async (b) => {
      const r = await ipam.requestPool({
        addressSpace: b.AddressSpace,
        pool: b.Pool || null,
        subPool: b.SubPool || null,
        v6: b.V6,
        options: b.Options,
        // A default subnet is never one this host holds already: nothing for Docker's list to decide.
        ...(b.Pool ? await docker() : {}),
      });
      return { PoolID: r.poolId, Pool: r.pool, Data: r.data };
    }),
    id('ReleasePool', async (b) => (await ipam.releasePool({ poolId: b.PoolID, ...(await docker()) }), Empty)),
    id('RequestAddress', async (b) => {
      const gateway = b.Options[DockerOption.requestAddressType] === DockerOption.gatewayType;
      const mac = gateway ? null : requestedMac(b.Options);
      const r = await ipam.requestAddress({ poolId: b.PoolID, address: b.Address || null, kind: gateway ? 'gateway' : 'endpoint', ...(mac ? { mac } : {}) });
      return { Address: r.address, Data: {} };
    }),
    id('ReleaseAddress', async (b) => (await ipam.releaseAddress({ poolId: b.PoolID, address: b.Address }), Empty)),

    nd('CreateNetwork', async (b) => (await netwire.createNetwork(networkSpec(b)), Empty)),
    nd('DeleteNetwork', async (b) => (await netwire.deleteNetwork({ networkId: b.NetworkID }), Empty)),
    nd('CreateEndpoint', async (b) => {
      const r = await netwire.createEndpoint({
        networkId: b.NetworkID,
        endpointId: b.EndpointID,
        address: b.Interface?.Address || null,
        addressV6: b.Interface?.AddressIPv6 || null,
        mac: b.Interface?.MacAddress || null,
      });
      // A MAC of the user's comes back on every start of the container: its addresses stick to it.
      const own = sticky ? userMac(b) : null;
      if (own) for (const address of [b.Interface?.Address, b.Interface?.AddressIPv6]) if (address) await sticky!(address, own);
      // Only fields Docker left empty may be filled in; anything else makes it roll back.
      return r.mac ? { Interface: { MacAddress: r.mac } } : {};
    }),
    nd('Join', async (b) => {
      const r = await netwire.join({ networkId: b.NetworkID, endpointId: b.EndpointID, sandboxKey: b.SandboxKey });
      // Docker never asks an internal network to publish, so ports given to a container on
      // internal networks alone would go nowhere, silently. (A bad port map is ProgramExternalConnectivity's to refuse.)
      if (r.internal && internalPorts) {
        const bindings = lenient(() => portBindings(b.Options));
        const refused = bindings.length > 0 ? await internalPorts(b.NetworkID, bindings) : null;
        if (refused) throw new InvalidRequestError(refused);
      }
      return {
        InterfaceName: { SrcName: r.srcName, DstPrefix: 'eth' },
        ...(r.gateway ? { Gateway: r.gateway } : {}),
        ...(r.gatewayV6 ? { GatewayIPv6: r.gatewayV6 } : {}),
        // Without a gateway (internal networks) Docker would otherwise add a docker_gwbridge
        // interface and route the container out through it.
        ...(r.gateway || r.gatewayV6 ? {} : { DisableGatewayService: true }),
      };
    }),
    nd('Leave', async (b) => (await netwire.leave({ networkId: b.NetworkID, endpointId: b.EndpointID }), Empty)),
    nd('DeleteEndpoint', async (b) => (await netwire.deleteEndpoint({ networkId: b.NetworkID, endpointId: b.EndpointID }), Empty)),
    // Mandatory (a 404 fails the container start), called twice per start, and Docker makes no
    // use of the map (its type assertions expect Go structs). Answered here, without a round trip.
    nd('EndpointOperInfo', async () => ({ Value: {} })),
    // Docker publishes no ports for a remote driver; netwire does, for the endpoint that gives the
    // container its default route (the only one Docker sends this for).
    nd('ProgramExternalConnectivity', async (b) => {
      const ports = portRequests(portBindings(b.Options));
      if (ports.length > 0) await netwire.publishPorts({ networkId: b.NetworkID, endpointId: b.EndpointID, ports });
      return Empty;
    }),
    nd('RevokeExternalConnectivity', async (b) => (await netwire.unpublishPorts({ networkId: b.NetworkID, endpointId: b.EndpointID }), Empty)),
    ['NetworkDriver.DiscoverNew', { iface: 'NetworkDriver', body: null, handle: async () => Empty }],
    ['NetworkDriver.DiscoverDelete', { iface: 'NetworkDriver', body: null, handle: async () => Empty }],
  ]);
}

function lenient<T>(f: () => T[]): T[] {
  try {
    return f();
  } catch {
    return [];
  }
}

/** Docker's CreateNetwork as our NetworkSpec; refuses networks that did not use our IPAM. */
export function networkSpec(b: z.output<typeof NetworkDriver.CreateNetwork>): NetworkSpec {
  const spaces = [...b.IPv4Data, ...b.IPv6Data].map((d) => d.AddressSpace);
  const ours: string[] = Object.values(AddressSpaces);
  if (spaces.length === 0 || spaces.some((s) => !ours.includes(s))) {
    throw new InvalidRequestError(
      "weave networks need weave's IPAM, because Docker's default IPAM only makes addresses unique on one host. " +
        'Create the network with: docker network create -d weave --ipam-driver weave [--subnet …] <name>',
    );
  }
  const generic = (b.Options[DockerOption.generic] ?? {}) as Record<string, unknown>;
  const labels = Object.fromEntries(Object.entries(generic).map(([k, v]) => [k, String(v)]));
  return {
    networkId: b.NetworkID,
    ipv4: b.IPv4Data.map((d) => ({ pool: d.Pool, gateway: d.Gateway ?? null })),
    ipv6: b.IPv6Data.map((d) => ({ pool: d.Pool, gateway: d.Gateway ?? null })),
    internal: b.Options[DockerOption.internal] === true,
    mtu: parseMtu(labels[DockerOption.mtu]),
    options: labels,
    // Only when on: a spec without it reads as off, as those from before the option do.
    ...(parseMulticast(labels[WeaveOption.multicast]) ? { multicast: true } : {}),
  };
}

/** `-o weave.multicast=…`: whether multicast beyond the link crosses hosts; off unless set. */
function parseMulticast(text: string | undefined): boolean {
  if (text === undefined || text === '') return false;
  const on = OptionBool.safeParse(text);
  if (!on.success) throw new InvalidRequestError(`-o ${WeaveOption.multicast}=${text}: must be true or false`);
  return on.data;
}

function parseMtu(text: string | undefined): number | null {
  if (text === undefined || text === '') return null;
  const mtu = Number(text);
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) {
    throw new InvalidRequestError(`-o ${DockerOption.mtu}=${text}: the MTU must be a whole number from 576 to 65535`);
  }
  return mtu;
}
