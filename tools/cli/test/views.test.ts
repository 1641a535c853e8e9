import { HostReport, networksView, peersView, problemsOf, psView, rmpeerView, statusView } from '../src/views';

/** Golden tests: the tables a person reads, exactly. */
const now = new Date('2026-01-01T00:10:00.000Z');
const NET = 'a'.repeat(64);
const EP = (c: string) => c.repeat(64);

const report = (host: string, endpoints: Array<[string, string, boolean]>, extra: Partial<HostReport> = {}): HostReport => ({
  host,
  ipam: { pools: [{ poolId: 'weave:10.32.0.0/24', pool: '10.32.0.0/24', subPool: null, gateway: '10.32.0.1', holders: { [host]: 1 }, blocks: [{ block: '10.32.0.0/26', owner: host, used: 3, size: 63 }] }], hosts: [] },
  netwire: {
    networks: [{ networkId: NET, bridge: 'wvbaaaaaaaaaaaa', wireId: 0x0a200000, gatewayMac: '7a:57:0a:20:00:00', mtu: 1436, internal: false, subnets: ['10.32.0.0/24'], endpoints: endpoints.length }],
    endpoints: endpoints.map(([c, address, present]) => ({ networkId: NET, endpointId: EP(c), address, addressV6: null, mac: '02:42:0a:20:00:02', hostVeth: `wvh${c.repeat(11)}`, present })),
  },
  router: null,
  problems: [],
  ...extra,
});

const router = {
  host: 'host1',
  address: '10.254.254.11',
  port: 6784,
  peers: [
    { host: 'host2', address: '10.254.254.12', port: 6784, state: 'connected' as const, lastSeen: '2026-01-01T00:09:59.000Z', since: '2026-01-01T00:00:00.000Z', path: 'sleeve' as const, mtu: 1436, pathReason: 'no VXLAN reply for 3 s' },
    { host: 'host3', address: '10.254.254.13', port: 6784, state: 'lost' as const, lastSeen: '2026-01-01T00:09:00.000Z', since: '2026-01-01T00:09:20.000Z', path: null, mtu: null },
    { host: 'host4', address: '10.254.254.14', port: 6784, state: 'connected' as const, lastSeen: '2026-01-01T00:09:59.000Z', since: '2026-01-01T00:00:00.000Z', path: 'fastpath' as const, mtu: 1450, pathReason: 'VXLAN replies arrive' },
  ],
  networks: [{ networkId: NET, wireId: 0x0a200000, tap: 'wvs0a200000', bridge: 'wvbaaaaaaaaaaaa', attached: true, vxlan: { device: 'wvx0a200000', vni: 0x0a2000, up: true } }],
  sleeve: { framesToPeers: '12', framesFromPeers: '9', dropUnknownPeer: '2', malformedTruncated: '0' },
};

test('weave peers', () => {
  expect(peersView(router, now)).toBe(
    [
      'PEER   ADDRESS             STATE      PATH      MTU   ENCRYPTION  LAST HEARD  SINCE    WHY THIS PATH',
      'host2  10.254.254.12:6784  connected  sleeve    1436  -           1s ago      10m ago  no VXLAN reply for 3 s',
      'host3  10.254.254.13:6784  lost       -         -     -           60s ago     40s ago  -',
      'host4  10.254.254.14:6784  connected  fastpath  1450  -           1s ago      10m ago  VXLAN replies arrive',
    ].join('\n'),
  );
});

test('weave networks: one row per network across hosts', () => {
  const reports = [report('host1', [['b', '10.32.0.2/24', true]]), report('host2', [['c', '10.32.0.64/24', true], ['d', '10.32.0.65/24', true]])];
  expect(networksView(reports)).toBe(['SUBNETS       WIRE ID     MTU   ENDPOINTS PER HOST', '10.32.0.0/24  0x0a200000  1436  host1:1 host2:2'].join('\n'));
});

test('weave ps: every endpoint of the mesh, by host and address, with its published ports', () => {
  const reports = [report('host2', [['d', '10.32.0.65/24', true], ['c', '10.32.0.64/24', false]]), report('host1', [['b', '10.32.0.2/24', true]])];
  reports[1]!.netwire!.endpoints[0]!.ports = [
    { protocol: 'tcp', hostIp: null, hostPort: 8080, containerIp: '10.32.0.2', containerPort: 80 },
    { protocol: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.32.0.2', containerPort: 53 },
  ];
  expect(psView(reports)).toBe(
    [
      'HOST   ENDPOINT      NETWORK       ADDRESS        MAC                STATE         PORTS',
      'host1  bbbbbbbbbbbb  10.32.0.0/24  10.32.0.2/24   02:42:0a:20:00:02  up            0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp',
      'host2  cccccccccccc  10.32.0.0/24  10.32.0.64/24  02:42:0a:20:00:02  veth missing  -',
      'host2  dddddddddddd  10.32.0.0/24  10.32.0.65/24  02:42:0a:20:00:02  up            -',
    ].join('\n'),
  );
});

test('weave status: the host, its peers, sleeve counters, networks, pools, then problems said plainly', () => {
  const r = report('host1', [['b', '10.32.0.2/24', true]], { router, problems: ['ipam of host1 did not answer: timed out'] });
  expect(statusView(r, now)).toBe(
    [
      'host host1 (10.254.254.11:6784)',
      '',
      'PEER   ADDRESS             STATE      PATH      MTU   ENCRYPTION  LAST HEARD  SINCE    WHY THIS PATH',
      'host2  10.254.254.12:6784  connected  sleeve    1436  -           1s ago      10m ago  no VXLAN reply for 3 s',
      'host3  10.254.254.13:6784  lost       -         -     -           60s ago     40s ago  -',
      'host4  10.254.254.14:6784  connected  fastpath  1450  -           1s ago      10m ago  VXLAN replies arrive',
      '',
      'sleeve: 12 frames to peers, 9 from peers; dropped: dropUnknownPeer 2',
      '',
      'NETWORK       BRIDGE           SUBNETS       MTU   INTERNAL  ENDPOINTS  WIRE ID     SLEEVE TAP   VXLAN (VNI)',
      'aaaaaaaaaaaa  wvbaaaaaaaaaaaa  10.32.0.0/24  1436  false     1          0x0a200000  wvs0a200000  wvx0a200000 (663552)',
      '',
      'POOL          RANGE  HOLDERS  BLOCKS (owner used/size)',
      '10.32.0.0/24  -      host1:1  10.32.0.0/26 host1 3/63',
      '',
      'problem: ipam of host1 did not answer: timed out',
      'problem: host3 unreachable for 40s (last heard 60s ago)',
    ].join('\n'),
  );
});

test('problems: a detached TAP and a lost veth are named', () => {
  const r = report('host1', [['b', '10.32.0.2/24', false]], { router: { ...router, peers: [], networks: [{ ...router.networks[0]!, attached: false }] } });
  expect(problemsOf(r, now)).toEqual([
    "network aaaaaaaaaaaa's sleeve TAP wvs0a200000 is not on bridge wvbaaaaaaaaaaaa: no traffic to other hosts",
    'endpoint bbbbbbbbbbbb (10.32.0.2/24) has lost its veth wvhbbbbbbbbbbb',
  ]);
});

test('problems: an endpoint off its network and containers moved off, or left disconnected from, addresses other hosts hold', () => {
  const r = report('host1', [['b', '10.32.0.2/24', true]]);
  r.netwire!.endpoints[0]!.isolated = { at: '2026-01-01T00:09:58.000Z', address: '10.32.0.2', takenBy: 'host2', containerId: EP('c') };
  const move = { containerId: EP('c'), networkId: NET, network: 'weave:foo', endpointId: EP('b'), takenBy: 'host2', endpointConfig: {}, since: '2026-01-01T00:09:30.000Z' };
  r.pluginApi = {
    readdress: [
      { ...move, container: 'web', address: '10.32.0.2', reconnect: true },
      { ...move, container: 'db', address: '10.32.0.50', reconnect: false },
    ],
  };
  expect(problemsOf(r, now)).toEqual([
    'endpoint bbbbbbbbbbbb of container cccccccccccc is off its network (taken off 2s ago): 10.32.0.2 is leased by host2',
    'container web is being moved off 10.32.0.2 on weave:foo (since 30s ago): 10.32.0.2 is leased by host2 (given there while this host was away)',
    'container db is disconnected from weave:foo: its --ip 10.32.0.50 is leased by host2 (given there while this host was away); connect it again with another --ip or none (docker network connect weave:foo db)',
  ]);
});

describe('ipam hosts and lost-host reclaim', () => {
  const live = (host: string, silentS: number, leaseLeftS: number) => ({
    host,
    state: 'live' as const,
    epoch: 1,
    renewedAt: new Date(now.getTime() - silentS * 1000).toISOString(),
    leaseLeftMs: leaseLeftS * 1000,
  });
  const reclaimed = (host: string, done: boolean) => ({
    host,
    state: 'reclaimed' as const,
    epoch: 2,
    renewedAt: '2026-01-01T00:00:00.000Z',
    reclaimedBy: 'host2',
    reclaimedAt: '2026-01-01T00:05:00.000Z',
    done,
  });
  const hosts = [live('host1', 3, 297), live('host3', 40, 120), live('host4', 310, -10), reclaimed('host5', true), reclaimed('host6', false)];
  const withHosts = (self: string) => report(self, [], { ipam: { pools: [], hosts } });

  test('weave status lists them, with the lease left or who reclaimed them', () => {
    expect(statusView(withHosts('host1'), now).split('\n\n')[3]).toBe(
      [
        'IPAM HOST  EPOCH  STATE                                    LAST RENEWED  LEASE',
        'host1      1      live                                     3s ago        5m left',
        'host3      1      live                                     40s ago       2m left',
        'host4      1      live                                     5m ago        ran out 10s ago',
        'host5      2      reclaimed by host2 5m ago                10m ago       -',
        'host6      2      reclaimed by host2 5m ago (in progress)  10m ago       -',
      ].join('\n'),
    );
  });

  test('problems: a silent host and when it will be reclaimed, an overdue one, a reclaim in progress; a quiet live host and a finished reclaim are fine', () => {
    expect(problemsOf(withHosts('host1'), now)).toEqual([
      'host3 unreachable for 40s; its blocks will be reclaimed in 2m (or now: weave rmpeer host3)',
      'host4 unreachable for 5m; its lease ran out 10s ago, its blocks are reclaimed on the next renewal of a live host',
      'host6 is being reclaimed by host2 (since 5m ago)',
    ]);
  });

  test('problems: this host itself reclaimed', () => {
    expect(problemsOf(withHosts('host5'), now)).toContain('ipam of host5 was reclaimed by host2 5m ago: addresses of containers started before then may be in use elsewhere');
  });

  test('weave rmpeer says what was reclaimed, or who did it first', () => {
    const at = '2026-01-01T00:09:30.000Z';
    expect(rmpeerView({ outcome: 'already', host: 'host3', by: 'host2', at }, now)).toBe('host3 was already reclaimed by host2 30s ago; nothing to do');
    const poolId = 'weave:10.32.0.0/24';
    expect(
      rmpeerView(
        { outcome: 'reclaimed', host: 'host3', epoch: 1, blocks: [{ poolId, block: '10.32.0.64/26' }], addresses: [{ poolId, address: '10.32.0.65' }, { poolId, address: '10.32.0.66' }], pools: [poolId] },
        now,
      ),
    ).toBe(
      [
        'reclaimed host3 (epoch 1): 1 block(s), 2 address(es), 1 pool reference(s)',
        '  block 10.32.0.64/26 of weave:10.32.0.0/24',
        '  address 10.32.0.65 of weave:10.32.0.0/24',
        '  address 10.32.0.66 of weave:10.32.0.0/24',
        '  pool weave:10.32.0.0/24',
      ].join('\n'),
    );
  });
});

test('problems: a peer encryption refuses is said with what to change', () => {
  const peer = (host: string, encryption: string) => ({ ...router.peers[0]!, host, encryption: encryption as 'established' });
  const r = report('host1', [], { router: { ...router, peers: [peer('host2', 'wrongPassword'), peer('host5', 'plaintextPeer'), peer('host6', 'encryptedPeer'), peer('host7', 'established')] } });
  expect(problemsOf(r, now)).toEqual([
    'host2 has a different password: no frame passes between it and this host until WEAVE_PASSWORD (or the password file) is the same on both',
    'host5 sends unencrypted traffic, which this host refuses: set the same WEAVE_PASSWORD there',
    'host6 sends encrypted traffic, which this host cannot read: set the same WEAVE_PASSWORD here',
  ]);
});

test('weave networks, ps and status: a network with IPv6 (a /64 of the mesh ULA) shows both subnets, addresses and pools', () => {
  const V6 = 'fd5a:1b2c:3d4e::/64';
  const dual = (host: string, endpoints: Array<[string, string, string]>) => {
    const r = report(host, []);
    r.netwire!.networks[0]!.subnets = ['10.32.0.0/24', V6];
    r.netwire!.endpoints = endpoints.map(([c, address, addressV6]) => ({ ...report(host, [[c, address, true]]).netwire!.endpoints[0]!, addressV6 }));
    r.netwire!.networks[0]!.endpoints = endpoints.length;
    r.ipam!.pools.push({ poolId: `weave:${V6}`, pool: V6, subPool: null, gateway: 'fd5a:1b2c:3d4e::1', holders: { [host]: 1 }, blocks: [{ block: 'fd5a:1b2c:3d4e::/122', owner: host, used: 2, size: 63 }] });
    return r;
  };
  const reports = [dual('host1', [['b', '10.32.0.2/24', 'fd5a:1b2c:3d4e::2/64']]), dual('host2', [['c', '10.32.0.64/24', 'fd5a:1b2c:3d4e::40/64']])];
  expect(networksView(reports)).toBe(['SUBNETS                           WIRE ID     MTU   ENDPOINTS PER HOST', '10.32.0.0/24,fd5a:1b2c:3d4e::/64  0x0a200000  1436  host1:1 host2:1'].join('\n'));
  expect(psView(reports)).toBe(
    [
      'HOST   ENDPOINT      NETWORK                           ADDRESS                              MAC                STATE  PORTS',
      'host1  bbbbbbbbbbbb  10.32.0.0/24,fd5a:1b2c:3d4e::/64  10.32.0.2/24 fd5a:1b2c:3d4e::2/64    02:42:0a:20:00:02  up     -',
      'host2  cccccccccccc  10.32.0.0/24,fd5a:1b2c:3d4e::/64  10.32.0.64/24 fd5a:1b2c:3d4e::40/64  02:42:0a:20:00:02  up     -',
    ].join('\n'),
  );
  expect(statusView(reports[0]!, now).split('\n\n').slice(1)).toEqual([
    [
      'NETWORK       BRIDGE           SUBNETS                           MTU   INTERNAL  ENDPOINTS  WIRE ID     SLEEVE TAP  VXLAN (VNI)',
      'aaaaaaaaaaaa  wvbaaaaaaaaaaaa  10.32.0.0/24,fd5a:1b2c:3d4e::/64  1436  false     1          0x0a200000  -           -',
    ].join('\n'),
    [
      'POOL                 RANGE  HOLDERS  BLOCKS (owner used/size)',
      '10.32.0.0/24         -      host1:1  10.32.0.0/26 host1 3/63',
      'fd5a:1b2c:3d4e::/64  -      host1:1  fd5a:1b2c:3d4e::/122 host1 2/63',
    ].join('\n'),
  ]);
});
