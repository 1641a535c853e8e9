import { inspectedAttachments, isDnsChange, listedAttachments, RunningContainers } from '../src/dns/docker-attachments';

/** Docker 20.10.24's answers for a container on a dual-stack network, run with `--network-alias web --network-alias API.svc`. */
const NET_ID = 'c575468f2dac4e5899ca03d7ca2fd7ac8262a6cece91c1937a56c4aaecb4b8c3';
const CONTAINER_ID = '3055dfbf33bb0d3ca76f0a4c4632ea72d79e262addcfbc2ef271e6527f670e4f';
const endpoint = (aliases: string[] | null) => ({
  IPAMConfig: null,
  Links: null,
  Aliases: aliases,
  NetworkID: NET_ID,
  EndpointID: '1850c530f60bf8625b900fded80112f870e470aaa7d7b48cf46d522fd87313c4',
  Gateway: '172.31.250.1',
  IPAddress: '172.31.250.2',
  IPPrefixLen: 24,
  IPv6Gateway: 'fd00:dead:beef::1',
  GlobalIPv6Address: 'fd00:dead:beef::2',
  GlobalIPv6PrefixLen: 64,
  MacAddress: '02:42:ac:1f:fa:02',
  DriverOpts: null,
});
// GET /containers/json: Aliases is null there, even though the endpoint has three.
const listed = { Id: CONTAINER_ID, Names: ['/Dns_Probe.1'], State: 'running', NetworkSettings: { Networks: { 'dnsprobe-net': endpoint(null) } } };
// GET /containers/<id>/json
const inspected = { Id: CONTAINER_ID, Name: '/Dns_Probe.1', State: { Running: true }, NetworkSettings: { Networks: { 'dnsprobe-net': endpoint(['web', 'API.svc', '3055dfbf33bb']) } } };
const ours = new Set([NET_ID]);

test('a listed container without aliases asks for an inspection', () => {
  const [c] = RunningContainers.parse([listed]);
  expect(listedAttachments(c!, ours)).toBeNull();
});

test('a listed container on none of our networks needs nothing more', () => {
  const [c] = RunningContainers.parse([listed]);
  expect(listedAttachments(c!, new Set(['f'.repeat(64)]))).toEqual([]);
});

test('the inspection gives name, aliases, endpoint and both addresses', () => {
  expect(inspectedAttachments(inspected, ours)).toEqual([
    {
      containerId: CONTAINER_ID,
      containerName: 'Dns_Probe.1',
      network: 'dnsprobe-net',
      endpointId: '1850c530f60bf8625b900fded80112f870e470aaa7d7b48cf46d522fd87313c4',
      aliases: ['web', 'API.svc', '3055dfbf33bb'],
      addresses: ['172.31.250.2', 'fd00:dead:beef::2'],
    },
  ]);
});

test('a list that carries aliases (and DNSNames, Docker 25+) is used as it is', () => {
  const withAliases = { ...listed, Names: ['/other/link', '/Dns_Probe.1'], NetworkSettings: { Networks: { 'dnsprobe-net': { ...endpoint(['web']), DNSNames: ['Dns_Probe.1', 'web', '3055dfbf33bb'] } } } };
  const [c] = RunningContainers.parse([withAliases]);
  expect(listedAttachments(c!, ours)?.map((a) => [a.containerName, a.aliases])).toEqual([['Dns_Probe.1', ['web', 'Dns_Probe.1', '3055dfbf33bb']]]);
});

test('a container stopped by its inspection, or without an endpoint id, has no attachments', () => {
  expect(inspectedAttachments({ ...inspected, State: { Running: false } }, ours)).toEqual([]);
  const noEndpoint = { ...inspected, NetworkSettings: { Networks: { 'dnsprobe-net': { ...endpoint([]), EndpointID: '', IPAddress: '' } } } };
  expect(inspectedAttachments(noEndpoint, ours)).toEqual([]);
});

test.each([
  [{ type: 'container', action: 'die', attributes: { name: 'web' } }, true],
  [{ type: 'network', action: 'connect', attributes: { name: 'weave:foo', type: 'weave' } }, true],
  [{ type: 'network', action: 'disconnect', attributes: { name: 'dnsprobe-net', type: 'bridge' } }, false],
  [{ type: 'network', action: 'destroy', attributes: { name: 'weave:foo', type: 'weave' } }, false],
])('event %j changes names: %s', (e, want) => {
  expect(isDnsChange('weave', e)).toBe(want);
});
