import { formatPortRequest, PortRequest, PublishedPort } from '@weave/contracts';
import { ConflictError, ExhaustedError } from '@weave/errors';
import { heldByNat, heldBySockets, HeldPort, parsePortRange, planPorts, portOwnerOf, portRules } from '../src/ports';
import { parseRuleLine } from '../src/firewall';
import { bridgeName, hostVethName } from '../src/names';
import { planReconcile } from '../src/reconcile';
import type { EndpointRecord, NetworkRecord } from '../src/store';
import { endpointRecord, networkSpec } from './helpers';

/** Published ports as data: what each request gets, which rules carry it, what the listings say is taken. */
const req = (o: Partial<PortRequest> = {}): PortRequest => ({ protocol: 'tcp', containerPort: 80, hostIp: null, hostPort: 8080, hostPortEnd: 8080, ...o });
const ephemeral = { first: 49153, last: 49155 };
const weave = (hostPort: number, o: Partial<HeldPort> = {}): HeldPort => ({ protocol: 'tcp', hostIp: null, hostPort, by: 'published by weave for endpoint wvh1 (to 10.0.0.9:80)', hostVeth: 'wvh1', ...o });
const plan = (requests: PortRequest[], held: HeldPort[] = [], previous?: PublishedPort[]) =>
  planPorts({ requests, containerIp: '10.77.0.2', held, ephemeral, previous });
const conflictOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConflictError);
    return (e as Error).message;
  }
  throw new Error('no conflict');
};

describe('port planning', () => {
  it('publishes a free port as asked, on every address or one', () => {
    expect(plan([req(), req({ protocol: 'udp', containerPort: 53, hostIp: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353 })])).toEqual([
      { protocol: 'tcp', hostIp: null, hostPort: 8080, containerIp: '10.77.0.2', containerPort: 80 },
      { protocol: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.77.0.2', containerPort: 53 },
    ]);
  });

  it.each<[string, HeldPort, string | null]>([
    ['the same port on every address', weave(8080), 'port 8080/tcp is already published by weave for endpoint wvh1 (to 10.0.0.9:80)'],
    ['the same port on one address', weave(8080, { hostIp: '192.0.2.1' }), 'port 8080/tcp is already published by weave'],
    ["Docker's own", { protocol: 'tcp', hostIp: null, hostPort: 8080, by: 'published by Docker (to 172.17.0.2:80)' }, 'port 8080/tcp is already published by Docker (to 172.17.0.2:80)'],
    ['a listening process', { protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 8080, by: 'in use on this host: sshd (pid 7) listens on 127.0.0.1:8080' }, 'in use on this host: sshd (pid 7)'],
    ['another protocol', weave(8080, { protocol: 'udp' }), null],
    ['another port', weave(8081), null],
  ])('a port held by %s', (_what, held, message) => {
    if (message === null) expect(plan([req()], [held])[0]!.hostPort).toBe(8080);
    else expect(conflictOf(() => plan([req()], [held]))).toContain(message);
  });

  it('lets two containers share a port number on two different addresses', () => {
    const held = [weave(8080, { hostIp: '127.0.0.1' })];
    expect(plan([req({ hostIp: '192.0.2.1' })], held)[0]).toMatchObject({ hostIp: '192.0.2.1', hostPort: 8080 });
    expect(conflictOf(() => plan([req({ hostIp: '127.0.0.1' })], held))).toBe('port 127.0.0.1:8080/tcp is already published by weave for endpoint wvh1 (to 10.0.0.9:80)');
  });

  it('takes the first free port of a range, and says which holds the first when none is free', () => {
    expect(plan([req({ hostPort: 8000, hostPortEnd: 8002 })], [weave(8000), weave(8001)])[0]!.hostPort).toBe(8002);
    expect(conflictOf(() => plan([req({ hostPort: 8000, hostPortEnd: 8001 })], [weave(8000), weave(8001)]))).toBe(
      'no port of 8000-8001/tcp is free (8000 is already published by weave for endpoint wvh1 (to 10.0.0.9:80))',
    );
  });

  it('picks any free ephemeral port for host port 0, and says so when there is none', () => {
    const any = req({ hostPort: 0, hostPortEnd: 0 });
    expect(plan([any, any], [weave(49153)]).map((p) => p.hostPort)).toEqual([49154, 49155]);
    expect(() => plan([any], [weave(49153), weave(49154), weave(49155)])).toThrow(ExhaustedError);
    expect(() => plan([any], [weave(49153), weave(49154), weave(49155)])).toThrow('ephemeral range 49153-49155');
  });

  it('refuses one port asked for twice by the same container', () => {
    expect(conflictOf(() => plan([req(), req({ containerPort: 81 })]))).toBe('port 8080/tcp is already asked for twice by this container (0.0.0.0:8080->80/tcp)');
  });

  it('keeps the ports an endpoint has when it is asked again, so a repeat changes nothing', () => {
    const any = req({ hostPort: 0, hostPortEnd: 0 });
    const first = plan([any, req({ hostPort: 8000, hostPortEnd: 8010 })]);
    expect(first.map((p) => p.hostPort)).toEqual([49153, 8000]);
    // Meanwhile the lower ports went free, or were taken: the endpoint keeps what it had.
    expect(plan([any, req({ hostPort: 8000, hostPortEnd: 8010 })], [weave(49155)], [{ ...first[0]!, hostPort: 49154 }, { ...first[1]!, hostPort: 8005 }]).map((p) => p.hostPort)).toEqual([49154, 8005]);
    // A previous port outside what is asked now is not kept.
    expect(plan([req()], [], [{ ...first[1]!, hostPort: 8005 }])[0]!.hostPort).toBe(8080);
  });

  it('writes requests the way docker run -p takes them', () => {
    expect(formatPortRequest(req())).toBe('8080:80/tcp');
    expect(formatPortRequest(req({ hostIp: '127.0.0.1', hostPort: 0, hostPortEnd: 0, protocol: 'udp' }))).toBe('127.0.0.1::80/udp');
    expect(formatPortRequest(req({ hostPort: 8000, hostPortEnd: 8010 }))).toBe('8000-8010:80/tcp');
  });
});

describe('port rules', () => {
  const ports: PublishedPort[] = [
    { protocol: 'tcp', hostIp: null, hostPort: 8080, containerIp: '10.77.0.2', containerPort: 80 },
    { protocol: 'udp', hostIp: '192.0.2.1', hostPort: 5353, containerIp: '10.77.0.2', containerPort: 53 },
  ];
  const lines = portRules({ bridge: 'wvb1', hostVeth: 'wvh2', ports }).map((r) => `${r.table} ${r.position} ${r.chain} ${r.spec.join(' ')}`);
  const tag = '-m comment --comment weave-port:wvb1/wvh2';

  it('DNAT, accept into the bridge, masquerade the hairpin, and the loopback only where the port answers on it', () => {
    expect(lines).toEqual([
      `nat last WEAVE-PORTS -p tcp -m tcp --dport 8080 ${tag} -j DNAT --to-destination 10.77.0.2:80`,
      `filter last WEAVE-FORWARD -d 10.77.0.2/32 ! -i wvb1 -o wvb1 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT ${tag} -j ACCEPT`,
      `nat last WEAVE-POSTROUTING -s 10.77.0.2/32 -d 10.77.0.2/32 -p tcp -m tcp --dport 80 ${tag} -j MASQUERADE`,
      `nat last WEAVE-POSTROUTING -s 127.0.0.0/8 -d 10.77.0.2/32 -p tcp -m tcp --dport 80 ${tag} -j MASQUERADE`,
      `nat last WEAVE-PORTS -d 192.0.2.1/32 -p udp -m udp --dport 5353 ${tag} -j DNAT --to-destination 10.77.0.2:53`,
      `filter last WEAVE-FORWARD -d 10.77.0.2/32 ! -i wvb1 -o wvb1 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT ${tag} -j ACCEPT`,
      `nat last WEAVE-POSTROUTING -s 10.77.0.2/32 -d 10.77.0.2/32 -p udp -m udp --dport 53 ${tag} -j MASQUERADE`,
    ]);
  });

  it('read back from iptables -S with their owner', () => {
    const r = parseRuleLine(`-A WEAVE-PORTS -p tcp -m tcp --dport 8080 -m comment --comment "weave-port:wvb1/wvh2" -j DNAT --to-destination 10.77.0.2:80`)!;
    expect(portOwnerOf(r.spec)).toEqual({ bridge: 'wvb1', hostVeth: 'wvh2' });
    expect(portOwnerOf(parseRuleLine('-A WEAVE-FORWARD -i wvb1 -o wvb1 -m comment --comment "weave:wvb1" -j ACCEPT')!.spec)).toBeNull();
  });
});

describe('ports in use', () => {
  it("reads weave's and Docker's DNATs out of the nat table, and nothing else", () => {
    const nat = [
      '-P PREROUTING ACCEPT',
      '-N DOCKER',
      '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
      '-A DOCKER -i docker0 -j RETURN',
      '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.2:80',
      '-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p udp -m udp --dport 18081 -j DNAT --to-destination 172.17.0.2:81',
      '-A WEAVE-PORTS -p tcp -m tcp --dport 8080 -m comment --comment "weave-port:wvb1/wvh2" -j DNAT --to-destination 10.77.0.2:80',
      '-A OTHER -p tcp -m tcp --dport 9999 -j DNAT --to-destination 10.1.1.1:80',
    ].join('\n');
    expect(heldByNat(nat)).toEqual([
      { protocol: 'tcp', hostIp: null, hostPort: 18080, by: 'published by Docker (to 172.17.0.2:80)' },
      { protocol: 'udp', hostIp: '127.0.0.1', hostPort: 18081, by: 'published by Docker (to 172.17.0.2:81)' },
      { protocol: 'tcp', hostIp: null, hostPort: 8080, by: 'published by weave for endpoint wvh2 (to 10.77.0.2:80)', hostVeth: 'wvh2' },
    ]);
  });

  it('reads listening sockets from ss, IPv4 and the IPv6 wildcard', () => {
    const ss = [
      'tcp   LISTEN 0      4096         0.0.0.0:2024       0.0.0.0:*    users:(("sshd",pid=512,fd=3))',
      'tcp   LISTEN 0      4096       127.0.0.1:4222       0.0.0.0:*',
      'tcp   LISTEN 0      4096            [::]:8443          [::]:*',
      'tcp   LISTEN 0      4096           [::1]:631           [::]:*',
      'udp   UNCONN 0      0      127.0.0.53%lo:53         0.0.0.0:*',
      'udp   UNCONN 0      0                  *:5353             *:*',
      '',
    ].join('\n');
    expect(heldBySockets(ss).map(({ protocol, hostIp, hostPort }) => `${hostIp ?? '*'}:${hostPort}/${protocol}`)).toEqual([
      '*:2024/tcp',
      '127.0.0.1:4222/tcp',
      '*:8443/tcp',
      '127.0.0.53:53/udp',
      '*:5353/udp',
    ]);
    expect(heldBySockets(ss)[0]!.by).toBe('in use on this host: sshd (pid 512) listens on 0.0.0.0:2024');
  });

  it("reads the ephemeral range, or takes Docker's default", () => {
    expect(parsePortRange('32768\t60999\n')).toEqual({ first: 32768, last: 60999 });
    expect(parsePortRange('')).toEqual({ first: 49153, last: 65535 });
  });
});

describe('reconcile plan for published ports', () => {
  const n1 = 'a'.repeat(64);
  const e1 = '1'.repeat(64);
  const e2 = '2'.repeat(64);
  const net: NetworkRecord = { spec: networkSpec({ networkId: n1 }), bridge: bridgeName(n1), mtu: 1450 };
  const port: PublishedPort = { protocol: 'tcp', hostIp: null, hostPort: 8080, containerIp: '10.77.0.2', containerPort: 80 };
  const ep = (endpointId: string, ports: PublishedPort[]): EndpointRecord => endpointRecord(n1, endpointId, { ports });
  const link = (name: string, owner: string) => ({ name, kind: 'bridge', master: null, mtu: 1450, mac: '', up: true, owner });

  it('restores recorded ports and removes rules no record has, sparing another stack on the machine', () => {
    const e3 = '3'.repeat(64);
    const plan = planReconcile({
      owner: 'h1',
      links: [link(net.bridge, 'h1'), link('wvb77777777777', 'another-host'), { ...link(hostVethName(e1), 'h1'), kind: 'veth', master: net.bridge }],
      networks: [net],
      endpoints: [ep(e1, [port]), ep(e2, []), ep(e3, [port])], // e3 lost its veth: its container is gone
      firewallBridges: [],
      portOwners: [
        { bridge: net.bridge, hostVeth: hostVethName(e1) },
        { bridge: net.bridge, hostVeth: hostVethName(e2) }, // revoked while netwire was down
        { bridge: 'wvb99999999999', hostVeth: 'wvh99999999999' }, // its network is gone
        { bridge: 'wvb77777777777', hostVeth: 'wvh77777777777' },
        { bridge: net.bridge, hostVeth: hostVethName(e3) },
      ],
    });
    expect(plan.restorePorts).toEqual([{ endpoint: ep(e1, [port]), bridge: net.bridge }]);
    expect(plan.removePorts).toEqual([
      { bridge: net.bridge, hostVeth: hostVethName(e2) },
      { bridge: 'wvb99999999999', hostVeth: 'wvh99999999999' },
      { bridge: net.bridge, hostVeth: hostVethName(e3) },
    ]);
  });
});
