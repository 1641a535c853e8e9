import { z } from 'zod';
import { CidrString, DockerId, IpString, IpWithPrefix } from './primitives';

/**
 * Docker's legacy network and IPAM plugin protocol, as dockerd 20.10-28 really sends it
 * (shared/reference/docker-plugin-protocol.md). Requests are loose: Docker adds fields across
 * versions and we must ignore what we do not know. `Options` maps are `null` from compose.
 */
const OptionMap = z.record(z.string(), z.unknown()).nullish().transform((m) => m ?? {});
const Ids = { NetworkID: DockerId, EndpointID: DockerId };

export const IpamData = z.looseObject({
  AddressSpace: z.string(),
  Pool: CidrString,
  Gateway: IpWithPrefix.optional(),
  AuxAddresses: z.record(z.string(), IpWithPrefix).nullish(),
});

export const NetworkDriver = {
  CreateNetwork: z.looseObject({
    NetworkID: DockerId,
    Options: OptionMap,
    IPv4Data: z.array(IpamData).nullish().transform((a) => a ?? []),
    IPv6Data: z.array(IpamData).nullish().transform((a) => a ?? []),
  }),
  DeleteNetwork: z.looseObject({ NetworkID: DockerId }),
  CreateEndpoint: z.looseObject({
    ...Ids,
    Interface: z
      .looseObject({
        Address: z.union([IpWithPrefix, z.literal('')]).optional(),
        AddressIPv6: z.union([IpWithPrefix, z.literal('')]).optional(),
        MacAddress: z.string().optional(),
      })
      .nullish(),
    Options: OptionMap,
  }),
  Join: z.looseObject({ ...Ids, SandboxKey: z.string().min(1), Options: OptionMap }),
  Leave: z.looseObject(Ids),
  DeleteEndpoint: z.looseObject(Ids),
  EndpointOperInfo: z.looseObject(Ids),
  ProgramExternalConnectivity: z.looseObject({ ...Ids, Options: OptionMap }),
  RevokeExternalConnectivity: z.looseObject(Ids),
} as const;

export const IpamDriver = {
  RequestPool: z.looseObject({
    AddressSpace: z.string(),
    Pool: z.union([CidrString, z.literal('')]).optional().default(''),
    SubPool: z.union([CidrString, z.literal('')]).optional().default(''),
    Options: z.record(z.string(), z.string()).nullish().transform((m) => m ?? {}),
    V6: z.boolean().optional().default(false),
  }),
  ReleasePool: z.looseObject({ PoolID: z.string().min(1) }),
  RequestAddress: z.looseObject({
    PoolID: z.string().min(1),
    Address: z.union([IpString, z.literal('')]).optional().default(''),
    Options: z.record(z.string(), z.string()).nullish().transform((m) => m ?? {}),
  }),
  ReleaseAddress: z.looseObject({ PoolID: z.string().min(1), Address: IpString }),
} as const;

export type NetworkDriverMethod = keyof typeof NetworkDriver;
export type IpamDriverMethod = keyof typeof IpamDriver;

/** Option keys Docker uses on the wire. */
export const DockerOption = {
  generic: 'com.docker.network.generic',
  internal: 'com.docker.network.internal',
  enableIpv6: 'com.docker.network.enable_ipv6',
  mtu: 'com.docker.network.driver.mtu',
  requestAddressType: 'RequestAddressType',
  gatewayType: 'com.docker.network.gateway',
  macAddress: 'com.docker.network.endpoint.macaddress',
  /** Join and ProgramExternalConnectivity: the container's `-p` bindings (DockerPortBinding). */
  portMap: 'com.docker.network.portmap',
  exposedPorts: 'com.docker.network.endpoint.exposedports',
} as const;

/** weave's own `-o` options of `docker network create` (in Docker's generic options, as the MTU is). */
export const WeaveOption = {
  /** `true`: multicast beyond the link crosses hosts on this network (NetworkSpec.multicast). */
  multicast: 'weave.multicast',
} as const;

const TRUE = ['1', 't', 'T', 'TRUE', 'true', 'True'] as const;
const FALSE = ['0', 'f', 'F', 'FALSE', 'false', 'False'] as const;
/** A boolean `-o` value, spelt as Docker takes its own (Go's strconv.ParseBool). */
export const OptionBool = z.enum([...TRUE, ...FALSE]).transform((v) => (TRUE as readonly string[]).includes(v));

/**
 * One entry of `com.docker.network.portmap` (libnetwork's types.PortBinding as JSON), as
 * dockerd 20.10 sends it: `{"Proto":6,"IP":"","Port":80,"HostIP":"127.0.0.1","HostPort":8080,"HostPortEnd":8080}`.
 * Proto is the IP protocol number (6 tcp, 17 udp, 132 sctp); HostPort 0 asks for any port,
 * HostPort < HostPortEnd for one of a range; HostIP is "" for every address.
 */
export const DockerPortBinding = z.looseObject({
  Proto: z.number().int(),
  Port: z.number().int().min(0).max(65535),
  HostIP: z.string().nullish().transform((s) => s ?? ''),
  HostPort: z.number().int().min(0).max(65535),
  HostPortEnd: z.number().int().min(0).max(65535).nullish().transform((n) => n ?? 0),
});
export const DockerPortMap = z.array(DockerPortBinding).nullish().transform((a) => a ?? []);
export type DockerPortBinding = z.output<typeof DockerPortBinding>;

/** The address spaces our IPAM announces; a network whose IPv4Data names another space used Docker's IPAM. */
export const AddressSpaces = { local: 'weave-local', global: 'weave-global' } as const;

export type CreateNetworkRequest = z.output<typeof NetworkDriver.CreateNetwork>;
export type CreateEndpointRequest = z.output<typeof NetworkDriver.CreateEndpoint>;
export type JoinRequest = z.output<typeof NetworkDriver.Join>;
export type RequestPoolRequest = z.output<typeof IpamDriver.RequestPool>;
export type RequestAddressRequest = z.output<typeof IpamDriver.RequestAddress>;
