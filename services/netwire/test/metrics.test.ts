import { parseSamples, rpcCallMetrics, serviceRegistry, timedHandlers } from '@weave/metrics';
import { collectNetwireState } from '../src/metrics';
import { handlers } from '../src/service';
import { endpointReq, fakeNetwire, networkSpec } from './helpers';

test('networks, bridges and endpoints present or missing in the kernel, and RPCs by method and outcome', async () => {
  const { kernel, netwire } = fakeNetwire({ mtu: 1400 });
  const metrics = serviceRegistry('netwire', 'h1');
  collectNetwireState(metrics, netwire, kernel);
  const rpc = timedHandlers(handlers(netwire), rpcCallMetrics(metrics, 'netwire'));
  const samples = async () => parseSamples(await metrics.text());
  expect(await samples()).toMatchObject({ weave_netwire_networks: 0, 'weave_netwire_endpoints{state="present"}': 0, 'weave_netwire_endpoints{state="missing"}': 0 });

  const spec = networkSpec();
  const { bridge } = await rpc.createNetwork(spec, { deadline: null });
  await rpc.createEndpoint(endpointReq(spec.networkId), { deadline: null });
  const second = endpointReq(spec.networkId, { address: '10.77.0.3/24' });
  await rpc.createEndpoint(second, { deadline: null });
  await expect(rpc.deleteNetwork({ networkId: 'f'.repeat(64) }, { deadline: null })).resolves.toEqual({});
  await expect(rpc.createEndpoint(endpointReq('e'.repeat(64)), { deadline: null })).rejects.toThrow();
  // A veth gone from the kernel behind netwire's back.
  const { endpoints } = await netwire.status();
  await kernel.deleteLink(endpoints.find((e) => e.endpointId === second.endpointId)!.hostVeth);

  expect(await samples()).toMatchObject({
    weave_netwire_networks: 1,
    'weave_netwire_bridges{state="present"}': 1,
    'weave_netwire_endpoints{state="present"}': 1,
    'weave_netwire_endpoints{state="missing"}': 1,
    [`weave_netwire_network_endpoints{bridge="${bridge}"}`]: 2,
    'weave_netwire_rpc_calls_total{method="createEndpoint",outcome="ok"}': 2,
    'weave_netwire_rpc_calls_total{method="createEndpoint",outcome="not_found"}': 1,
    'weave_netwire_rpc_duration_seconds_count{method="createNetwork"}': 1,
  });
});
