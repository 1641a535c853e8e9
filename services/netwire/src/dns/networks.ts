import type { NetworkSpec } from '@weave/contracts';
import { subnetsOf } from './names';
import type { DnsNetwork } from './server';

/**
 * Where a network's containers reach weave DNS: its first IPv4 gateway, which every host's bridge
 * of the network holds. None on an internal network (no gateway, and no route to a resolver).
 */
export function dnsNetworkOf(n: { bridge: string; spec: NetworkSpec }): DnsNetwork | null {
  if (n.spec.internal) return null;
  const gateway = n.spec.ipv4.find((p) => p.gateway)?.gateway;
  if (!gateway) return null;
  return { bridge: n.bridge, gateway: gateway.replace(/\/\d+$/, ''), subnets: subnetsOf([...n.spec.ipv4, ...n.spec.ipv6]) };
}
