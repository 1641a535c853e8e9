import {
  AddressSpaces, DockerOption, EVENT_SCHEMA_VERSION, EventEnvelope, IpamDriver, ipamRpc, NetworkDriver, netwireRpc, pluginApiRpc, Presence, routerRpc, RpcService, ServiceName, Subjects,
} from '@weave/contracts';
import type { z } from 'zod';
import { acceptsEvent, acceptsPresence } from './oracle';
import type { Tree } from './tree';

/** The state the fuzz run sets up first, so that cases can name real pools, networks and endpoints. */
export interface Fixture {
  host: string;
  routerHost: string;
  pool: string;
  poolId: string;
  /** With prefix length, as IPAM hands addresses out. */
  gateway: string;
  address: string;
  networkId: string;
  endpointId: string;
}

/**
 * A schema-valid request that must still be refused: it names what does not exist, what is
 * taken, or what the handler (not the schema) forbids. Only ones that are refused before any
 * state changes belong here.
 */
export interface Dangling {
  what: string;
  body: Tree;
}

/**
 * For fields the schema leaves loose (a pool id is any non-empty string): true when a
 * schema-valid request must be refused all the same, so the fuzzer may send it as a bad one.
 */
export type RefusedAnyway = (request: unknown) => boolean;

const POOL_ID_LIKE = /^weave:[0-9a-fA-F.:]+\/\d{1,3}(:[0-9a-fA-F.:]+\/\d{1,3})?$/;
/** Any pool id that is not in the form ipam issues names no pool, whatever else the request says. */
const bogusPoolId = (field: string): RefusedAnyway => (v) => {
  const id = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[field] : undefined;
  return typeof id === 'string' && !POOL_ID_LIKE.test(id);
};

/** Something the services accept input on, with the schema that decides what is malformed. */
export type Target =
  | { kind: 'plugin'; name: string; path: string; iface: 'NetworkDriver' | 'IpamDriver'; schema: z.ZodType; seed: Tree; dangling: Dangling[]; refusedAnyway?: RefusedAnyway }
  | { kind: 'plugin-paths'; name: string }
  | { kind: 'plugin-http'; name: string }
  | { kind: 'rpc'; name: string; service: ServiceName; host: string; method: string; schema: z.ZodType; seed: Tree; dangling: Dangling[]; refusedAnyway?: RefusedAnyway }
  | { kind: 'rpc-unknown'; name: string; service: ServiceName; host: string }
  | { kind: 'publish'; name: string; subject: string; schema: z.ZodType; accepts: (data: Uint8Array) => boolean; seed: Tree };

/** A well-formed Docker id that names nothing; `n` tells the ones of a run apart. */
export const freshId = (n: number): string => (n.toString(16).padStart(8, '0') + 'f0'.repeat(28)).slice(0, 64);

const UNKNOWN_POOL = 'weave:10.251.99.0/24';
const OUTSIDE = '192.0.2.7';

const ip = (withPrefix: string) => withPrefix.split('/')[0]!;
/** Host `n` of the fixture's /24, with its prefix length. */
const inPool = (f: Fixture, n: number) => `${f.pool.split('.').slice(0, 3).join('.')}.${n}/24`;

/** Docker's plugin methods that take a body, with a request Docker could send for the fixture. */
function pluginTargets(f: Fixture): Target[] {
  const nd = (method: keyof typeof NetworkDriver, seed: Tree, dangling: Dangling[] = []): Target => ({
    kind: 'plugin', name: `plugin NetworkDriver.${method}`, path: `/NetworkDriver.${method}`, iface: 'NetworkDriver', schema: NetworkDriver[method], seed, dangling,
  });
  const id = (method: keyof typeof IpamDriver, seed: Tree, dangling: Dangling[] = [], refusedAnyway?: RefusedAnyway): Target => ({
    kind: 'plugin', name: `plugin IpamDriver.${method}`, path: `/IpamDriver.${method}`, iface: 'IpamDriver', schema: IpamDriver[method], seed, dangling, refusedAnyway,
  });
  const ids = { NetworkID: f.networkId, EndpointID: f.endpointId };
  const ipv4 = [{ AddressSpace: AddressSpaces.local, Pool: f.pool, Gateway: f.gateway }];
  const createNetwork = (over: { [k: string]: Tree }) => ({ NetworkID: freshId(1), Options: { [DockerOption.generic]: {} }, IPv4Data: ipv4, IPv6Data: [], ...over });
  return [
    nd('CreateNetwork', createNetwork({}), [
      { what: "Docker's own IPAM", body: createNetwork({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.251.40.0/24', Gateway: '10.251.40.1/24' }] }) },
      { what: 'no IPv4 data', body: createNetwork({ IPv4Data: null }) },
      { what: 'MTU option out of range', body: createNetwork({ Options: { [DockerOption.generic]: { [DockerOption.mtu]: '99999' } } }) },
      { what: 'MTU option not a number', body: createNetwork({ Options: { [DockerOption.generic]: { [DockerOption.mtu]: '1500abc' } } }) },
    ]),
    nd('DeleteNetwork', { NetworkID: f.networkId }),
    nd('CreateEndpoint', { NetworkID: f.networkId, EndpointID: freshId(2), Interface: { Address: inPool(f, 77), AddressIPv6: '', MacAddress: '' }, Options: {} }, [
      { what: 'unknown network', body: { NetworkID: freshId(3), EndpointID: freshId(4), Interface: { Address: inPool(f, 78) }, Options: {} } },
    ]),
    nd('Join', { ...ids, SandboxKey: '/var/run/docker/netns/fuzz', Options: {} }, [
      { what: 'unknown endpoint', body: { NetworkID: f.networkId, EndpointID: freshId(5), SandboxKey: '/var/run/docker/netns/fuzz', Options: {} } },
    ]),
    nd('Leave', ids),
    nd('DeleteEndpoint', ids),
    nd('EndpointOperInfo', ids),
    nd('ProgramExternalConnectivity', { ...ids, Options: {} }),
    nd('RevokeExternalConnectivity', ids),
    id('RequestPool', { AddressSpace: AddressSpaces.local, Pool: '10.251.30.0/24', SubPool: '', Options: {}, V6: false }, [
      { what: 'ip-range outside the subnet', body: { AddressSpace: AddressSpaces.local, Pool: '10.251.30.0/24', SubPool: '10.251.31.0/25', Options: {}, V6: false } },
      { what: 'IPv4 subnet for IPv6', body: { AddressSpace: AddressSpaces.local, Pool: '10.251.30.0/24', Options: {}, V6: true } },
      // (IPv6 without a subnet is valid: it gets a /64 of the mesh's ULA prefix.)
      { what: 'IPv6 ip-range without a subnet', body: { AddressSpace: AddressSpaces.local, Pool: '', SubPool: 'fd00::/120', Options: {}, V6: true } },
      { what: "subnet overlapping the fixture's", body: { AddressSpace: AddressSpaces.local, Pool: '10.251.0.0/16', Options: {}, V6: false } },
    ]),
    id('ReleasePool', { PoolID: f.poolId }, [], bogusPoolId('PoolID')),
    id('RequestAddress', { PoolID: f.poolId, Address: '', Options: {} }, [
      { what: 'unknown pool', body: { PoolID: UNKNOWN_POOL, Address: '', Options: {} } },
      { what: 'address outside the pool', body: { PoolID: f.poolId, Address: OUTSIDE, Options: {} } },
      { what: 'address taken', body: { PoolID: f.poolId, Address: ip(f.address), Options: {} } },
    ], bogusPoolId('PoolID')),
    id('ReleaseAddress', { PoolID: f.poolId, Address: ip(f.address) }, [{ what: 'address outside the pool', body: { PoolID: f.poolId, Address: OUTSIDE } }], bogusPoolId('PoolID')),
  ];
}

type Service = 'ipam' | 'netwire' | 'router' | 'plugin-api';
/** Before anything the fixture holds was made: a reconciliation with it would drop nothing. */
const OLDER_THAN = '2020-01-01T00:00:00.000Z';

/** Every RPC method each service serves, with a request its caller could send for the fixture. */
function rpcTargets(f: Fixture): Target[] {
  const ids = { networkId: f.networkId, endpointId: f.endpointId };
  const seeds: { [S in Service]: Record<string, { seed: Tree; dangling?: Dangling[] }> } = {
    ipam: {
      requestPool: {
        seed: { addressSpace: AddressSpaces.local, pool: '10.251.30.0/24', subPool: null, v6: false, options: {} },
        dangling: [{ what: "subnet overlapping the fixture's", body: { addressSpace: AddressSpaces.local, pool: f.pool.replace(/\.0\/24$/, '.128/25'), subPool: null, v6: false, options: {} } }],
      },
      releasePool: { seed: { poolId: f.poolId } },
      requestAddress: {
        seed: { poolId: f.poolId, address: null, kind: 'endpoint' },
        dangling: [
          { what: 'unknown pool', body: { poolId: UNKNOWN_POOL, address: null, kind: 'endpoint' } },
          { what: 'address outside the pool', body: { poolId: f.poolId, address: OUTSIDE, kind: 'endpoint' } },
          { what: 'address taken', body: { poolId: f.poolId, address: ip(f.address), kind: 'endpoint' } },
        ],
      },
      releaseAddress: { seed: { poolId: f.poolId, address: ip(f.address) }, dangling: [{ what: 'address outside the pool', body: { poolId: f.poolId, address: OUTSIDE } }] },
      status: { seed: {} },
      reconcileHost: { seed: { pools: [{ subnet: f.pool, keep: [ip(f.gateway), ip(f.address)] }], olderThan: OLDER_THAN } },
      checkLeases: { seed: { pools: [{ subnet: f.pool, addresses: [ip(f.address)] }] } },
      stickToMac: { seed: { address: f.address, mac: '02:42:aa:bb:cc:dd' } },
    },
    netwire: {
      createNetwork: { seed: { networkId: freshId(6), ipv4: [{ pool: '10.251.30.0/24', gateway: '10.251.30.1/24' }], ipv6: [], internal: false, mtu: null, options: {} } },
      deleteNetwork: { seed: { networkId: f.networkId } },
      createEndpoint: {
        seed: { networkId: f.networkId, endpointId: freshId(7), address: inPool(f, 79), addressV6: null, mac: null },
        dangling: [{ what: 'unknown network', body: { networkId: freshId(8), endpointId: freshId(9), address: inPool(f, 80), addressV6: null, mac: null } }],
      },
      join: {
        seed: { ...ids, sandboxKey: '/var/run/docker/netns/fuzz' },
        dangling: [{ what: 'unknown endpoint', body: { networkId: f.networkId, endpointId: freshId(10), sandboxKey: '/var/run/docker/netns/fuzz' } }],
      },
      leave: { seed: ids },
      deleteEndpoint: { seed: ids },
      status: { seed: {} },
      reconcileEndpoints: { seed: { networks: [{ networkId: f.networkId, keep: [f.endpointId] }], olderThan: OLDER_THAN } },
      isolateEndpoints: { seed: { endpoints: [{ ...ids, containerId: null, address: ip(f.address), takenBy: 'fuzzpeer' }] } },
    },
    router: { status: { seed: {} } },
    'plugin-api': { reconcile: { seed: {} } },
  };
  const defs: Record<Service, RpcService> = { ipam: ipamRpc, netwire: netwireRpc, router: routerRpc, 'plugin-api': pluginApiRpc };
  return (Object.keys(defs) as Array<keyof typeof defs>).flatMap((service) => {
    const host = service === 'router' ? f.routerHost : f.host;
    const methods = Object.entries(defs[service].methods).map(([method, spec]): Target => {
      // A method without a seed here is still fuzzed, from the empty object and its schema's fields.
      const s: { seed: Tree; dangling?: Dangling[] } = seeds[service][method] ?? { seed: {} };
      const refusedAnyway = service === 'ipam' && method !== 'requestPool' && method !== 'status' ? bogusPoolId('poolId') : undefined;
      return { kind: 'rpc', name: `nats ${service}.${method}`, service, host, method, schema: spec.req, seed: s.seed, dangling: s.dangling ?? [], refusedAnyway };
    });
    return [...methods, { kind: 'rpc-unknown', name: `nats ${service}.<unknown method>`, service, host }];
  });
}

/** Subjects the router listens on without replying: presence, and netwire's events. */
function publishTargets(f: Fixture): Target[] {
  const presence: Tree = { host: 'fuzzpeer', boot: '0123456789abcdef', address: '127.0.0.9', port: 6784, leaving: false };
  const event: Tree = {
    v: EVENT_SCHEMA_VERSION, seq: 1, time: '2025-01-01T00:00:00.000Z', host: f.routerHost, service: 'netwire', kind: 'network.deleted',
    data: { networkId: f.networkId, bridge: 'wvfuzz' },
  };
  return [
    { kind: 'publish', name: 'nats presence', subject: Subjects.presence('fuzzpeer'), schema: Presence, accepts: acceptsPresence, seed: presence },
    { kind: 'publish', name: 'nats netwire events (router)', subject: Subjects.event(f.routerHost, 'netwire', 'network.deleted'), schema: EventEnvelope, accepts: acceptsEvent, seed: event },
  ];
}

export function allTargets(f: Fixture): Target[] {
  return [
    ...pluginTargets(f),
    { kind: 'plugin-paths', name: 'plugin <unknown path or verb>' },
    { kind: 'plugin-http', name: 'plugin <broken HTTP>' },
    ...rpcTargets(f),
    ...publishTargets(f),
  ];
}
