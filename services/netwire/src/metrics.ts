import { countEach, type Family, type Registry } from '@weave/metrics';
import type { Kernel } from './kernel';
import type { Netwire } from './netwire';

/**
 * netwire's state at each scrape: the networks and endpoints it has recorded (its status), and
 * whether their bridges and veths are in the kernel. Its RPCs (reconcileEndpoints among them:
 * plugin-api's reconciliation runs) are counted by rpcCallMetrics.
 */
export function collectNetwireState(registry: Registry, netwire: Pick<Netwire, 'status'>, kernel: Pick<Kernel, 'listLinks'>): void {
  registry.collect(async (): Promise<Family[]> => {
    const [status, links] = await Promise.all([netwire.status(), kernel.listLinks()]);
    const inKernel = new Set(links.map((l) => l.name));
    const presence = <T>(items: readonly T[], present: (t: T) => boolean) => countEach('state', ['present', 'missing'], items, (t) => (present(t) ? 'present' : 'missing'));
    return [
      { name: 'weave_netwire_networks', help: 'Weave networks recorded on this host', type: 'gauge', samples: [{ labels: {}, value: status.networks.length }] },
      { name: 'weave_netwire_bridges', help: "Recorded networks' bridges, by whether they are in the kernel (present, missing)", type: 'gauge', samples: presence(status.networks, (n) => inKernel.has(n.bridge)) },
      { name: 'weave_netwire_endpoints', help: 'Recorded endpoints, by whether their veth is in the kernel (present, missing)', type: 'gauge', samples: presence(status.endpoints, (e) => e.present) },
      {
        name: 'weave_netwire_isolated_endpoints',
        help: 'Endpoints taken off their network because another host holds their address (until Docker disconnects them)',
        type: 'gauge',
        samples: [{ labels: {}, value: status.endpoints.filter((e) => e.isolated).length }],
      },
      {
        name: 'weave_netwire_network_endpoints',
        help: 'Endpoints per network, by its bridge',
        type: 'gauge',
        samples: status.networks.map((n) => ({ labels: { bridge: n.bridge }, value: n.endpoints })),
      },
    ];
  });
}
