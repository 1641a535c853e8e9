import type { DockerPortBinding } from '@weave/contracts';
import { InvalidRequestError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { Backends, routes } from '../src/driver';
import { AttachmentView, internalPortsCheck, portRequests, wayOut } from '../src/ports';

/** Published ports: Docker's port map as netwire's requests, and the Join check for internal networks. */
const NID = 'a'.repeat(64);
const EID = 'b'.repeat(64);
const OTHER = 'c'.repeat(64);
const bind = (o: Partial<DockerPortBinding> = {}): DockerPortBinding => ({ Proto: 6, Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080, ...o });

describe("Docker's port map", () => {
  it('becomes requests: any address, one address, a range, any port', () => {
    expect(
      portRequests([bind(), bind({ Proto: 17, Port: 53, HostIP: '127.0.0.1', HostPort: 5353, HostPortEnd: 5353 }), bind({ HostIP: '0.0.0.0', HostPort: 8000, HostPortEnd: 8010 }), bind({ HostPort: 0, HostPortEnd: 0 })]),
    ).toEqual([
      { protocol: 'tcp', containerPort: 80, hostIp: null, hostPort: 8080, hostPortEnd: 8080 },
      { protocol: 'udp', containerPort: 53, hostIp: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353 },
      { protocol: 'tcp', containerPort: 80, hostIp: null, hostPort: 8000, hostPortEnd: 8010 },
      { protocol: 'tcp', containerPort: 80, hostIp: null, hostPort: 0, hostPortEnd: 0 },
    ]);
    // Older engines leave HostPortEnd 0 for a single port.
    expect(portRequests([bind({ HostPortEnd: 0 })])[0]).toMatchObject({ hostPort: 8080, hostPortEnd: 8080 });
  });

  it.each<[string, Partial<DockerPortBinding>, RegExp]>([
    ['sctp', { Proto: 132 }, /weave publishes tcp and udp ports, not 8080:80\/sctp/],
    ['an IPv6 host address', { HostIP: '::1' }, /IPv4 addresses only, not on ::1 \(::1:8080:80\/tcp\)/],
    ['container port 0', { Port: 0 }, /port 0 cannot be published/],
  ])('refuses %s', (_what, o, message) => {
    expect(() => portRequests([bind(o)])).toThrow(InvalidRequestError);
    expect(() => portRequests([bind(o)])).toThrow(message);
  });
});

describe('a container publishing ports on an internal network', () => {
  const networks = [
    { id: NID, name: 'weave:private', internal: true },
    { id: OTHER, name: 'weave:public', internal: false },
  ];
  const view = (...containers: AttachmentView['containers']): AttachmentView => ({ networks, containers });

  it.each<[string, AttachmentView, string]>([
    ['on internal networks alone', view({ id: '1', state: 'created', networks: ['weave:private'] }), 'none'],
    ['on a non-internal network too, by name or id', view({ id: '1', state: 'created', networks: ['weave:private', OTHER.slice(0, 12)] }), 'some'],
    ['being connected while it runs (its way out is elsewhere)', view({ id: '1', state: 'running', networks: ['bridge'] }), 'unknown'],
    ['started before (docker start, a restart policy: left as Docker leaves it)', view({ id: '1', state: 'exited', networks: ['weave:private'] }), 'unknown'],
    ['one of two starting that has a way out', view({ id: '1', state: 'created', networks: ['weave:private'] }, { id: '2', state: 'created', networks: ['weave:private', 'weave:public'] }), 'some'],
    ['on a network Docker does not list (the builtin bridge)', view({ id: '1', state: 'created', networks: ['weave:private', 'bridge'] }), 'some'],
  ])('%s', (_what, v, verdict) => {
    expect(wayOut(NID, v)).toBe(verdict);
  });

  it('is refused with what to do, and let through when Docker cannot tell', async () => {
    const docker = { networksAndContainers: jest.fn(async () => view({ id: '1', state: 'created', networks: ['weave:private'] })) };
    const check = internalPortsCheck({ docker, log: silentLogger() });
    expect(await check(NID, [bind(), bind({ Proto: 17, HostIP: '127.0.0.1' })])).toBe(
      'weave:private is an internal network (--internal): nothing on it can be reached from outside, so it cannot publish 8080:80/tcp, 127.0.0.1:8080:80/udp. ' +
        'Leave out -p, or attach the container to a non-internal network as well (its ports are published there)',
    );
    docker.networksAndContainers.mockRejectedValueOnce(new Error('Docker GET /networks did not answer within 2000 ms'));
    expect(await check(NID, [bind()])).toBeNull();
  });
});

describe('the driver', () => {
  const calls: Array<[string, unknown]> = [];
  let joinReply = { srcName: 'wvcbbbbbbbbbbb', gateway: '10.9.0.1' as string | null, gatewayV6: null, internal: false };
  const netwire = {
    join: async (r: unknown) => (calls.push(['join', r]), joinReply),
    publishPorts: async (r: unknown) => (calls.push(['publishPorts', r]), { ports: [] }),
    unpublishPorts: async (r: unknown) => (calls.push(['unpublishPorts', r]), {}),
  };
  const internalPorts = jest.fn(async (): Promise<string | null> => 'refused: internal');
  const table = routes({ ipam: {}, netwire, internalPorts } as unknown as Backends);
  const call = (method: string, body: object) => table[`NetworkDriver.${method}`]!.handle(table[`NetworkDriver.${method}`]!.body!.parse(body));
  const portmap = { 'com.docker.network.portmap': [bind()], 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }] };
  beforeEach(() => {
    calls.length = 0;
    internalPorts.mockClear();
    joinReply = { ...joinReply, gateway: '10.9.0.1', internal: false };
  });

  it('publishes on ProgramExternalConnectivity and unpublishes on RevokeExternalConnectivity', async () => {
    await expect(call('ProgramExternalConnectivity', { NetworkID: NID, EndpointID: EID, Options: portmap })).resolves.toEqual({});
    await call('ProgramExternalConnectivity', { NetworkID: NID, EndpointID: EID, Options: { 'com.docker.network.portmap': [] } });
    await call('RevokeExternalConnectivity', { NetworkID: NID, EndpointID: EID });
    expect(calls).toEqual([
      ['publishPorts', { networkId: NID, endpointId: EID, ports: [{ protocol: 'tcp', containerPort: 80, hostIp: null, hostPort: 8080, hostPortEnd: 8080 }] }],
      ['unpublishPorts', { networkId: NID, endpointId: EID }],
    ]);
  });

  it('refuses a port map that does not parse', async () => {
    await expect(call('ProgramExternalConnectivity', { NetworkID: NID, EndpointID: EID, Options: { 'com.docker.network.portmap': [{ Proto: 'tcp' }] } })).rejects.toThrow(
      /invalid com.docker.network.portmap/,
    );
  });

  it('asks about a way out only for an internal network with ports, and refuses the Join when there is none', async () => {
    const join = { NetworkID: NID, EndpointID: EID, SandboxKey: '/var/run/docker/netns/x' };
    await call('Join', { ...join, Options: portmap });
    joinReply = { ...joinReply, gateway: null, internal: true };
    await call('Join', { ...join, Options: {} });
    expect(internalPorts).not.toHaveBeenCalled();
    await expect(call('Join', { ...join, Options: portmap })).rejects.toThrow('refused: internal');
    expect(internalPorts).toHaveBeenCalledWith(NID, [bind()]);
    internalPorts.mockResolvedValueOnce(null);
    await expect(call('Join', { ...join, Options: portmap })).resolves.toMatchObject({ DisableGatewayService: true });
  });
});
