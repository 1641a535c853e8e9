import { KernelCommandError, LinuxKernel } from '../src';

/**
 * The commands LinuxKernel runs, with a scripted `exec` instead of the real programs, so this
 * runs without root. The real-kernel test checks the same commands against a real kernel.
 */
function scripted(answers: Record<string, { stdout?: string; stderr?: string; code?: number }> = {}) {
  const ran: string[] = [];
  const exec = async (file: string, args: readonly string[], input?: string) => {
    const line = [file, ...args].join(' ') + (input ? ` <<< ${input.trim().split('\n').join(' | ')}` : '');
    ran.push(line);
    const hit = Object.entries(answers).find(([k]) => line.includes(k))?.[1];
    if (hit?.code) throw Object.assign(new Error(`Command failed: ${line}`), { code: hit.code, stderr: hit.stderr ?? '', stdout: '' });
    return { stdout: hit?.stdout ?? '', stderr: '' };
  };
  return { ran, exec };
}

it('runs every command inside the given namespace through nsenter, without a shell', async () => {
  const s = scripted();
  const k = new LinuxKernel({ netns: 'wvt-x', exec: s.exec });
  await k.createVethPair('wvh1', 'wvc1', { mtu: 1450, peerMac: '02:42:0a:00:00:02', owner: 'h1', master: 'wvb1' });
  await k.addAddress('wvb1', 'fd00::1/64');
  expect(s.ran).toEqual([
    'nsenter --net=/run/netns/wvt-x -- ip -batch - <<< link add name wvh1 mtu 1450 master wvb1 up type veth peer name wvc1 mtu 1450 address 02:42:0a:00:00:02 | link set dev wvh1 alias weave:h1',
    'nsenter --net=/run/netns/wvt-x -- ip addr replace fd00::1/64 dev wvb1 nodad',
  ]);
  expect(() => new LinuxKernel({ netns: 'x; rm -rf /' })).toThrow(TypeError);
});

it('sets the bridge MTU after creating it, and removes the bridge if that fails', async () => {
  const s = scripted({ 'mtu 1450': { code: 2, stderr: 'Error: mtu less than device minimum.' } });
  const k = new LinuxKernel({ exec: s.exec });
  await expect(k.createBridge('wvb1', { mtu: 1450, mac: '7a:00:00:00:00:01', owner: 'h1' })).rejects.toThrow(/mtu less than device minimum/);
  expect(s.ran).toEqual(['ip link add name wvb1 address 7a:00:00:00:00:01 type bridge', 'ip link set dev wvb1 mtu 1450 alias weave:h1', 'ip link del dev wvb1']);
});

it('puts the command and stderr in the error and keeps the cause', async () => {
  const s = scripted({ 'link set': { code: 1, stderr: 'Cannot find device "nope"\n' } });
  const err = (await new LinuxKernel({ exec: s.exec }).setUp('nope').catch((e: unknown) => e)) as KernelCommandError;
  expect(err).toBeInstanceOf(KernelCommandError);
  expect(err.message).toBe('`ip link set dev nope up` failed (exit 1): Cannot find device "nope"');
  expect(err.command).toBe('ip link set dev nope up');
  expect(err.stderr).toMatch(/Cannot find device/);
  expect(err.cause).toBeInstanceOf(Error);
  expect(err.code).toBe('unavailable');
});

it('treats deleting a missing link as done', async () => {
  const s = scripted({ 'link del': { code: 1, stderr: 'Cannot find device "wvh1"' } });
  await expect(new LinuxKernel({ exec: s.exec }).deleteLink('wvh1')).resolves.toBe(false);
  const other = scripted({ 'link del': { code: 2, stderr: 'RTNETLINK answers: Operation not permitted' } });
  await expect(new LinuxKernel({ exec: other.exec }).deleteLink('wvh1')).rejects.toThrow(/Operation not permitted/);
});

it('reads links and the underlay MTU from ip -j', async () => {
  const links = JSON.stringify([
    { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP'], mtu: 65536, address: '00:00:00:00:00:00' },
    { ifindex: 2, ifname: 'eth0', flags: ['UP'], mtu: 9001, address: '52:54:00:00:00:01' },
    { ifindex: 3, ifname: 'wvb1', flags: [], mtu: 1450, address: '7a:00:00:00:00:01', linkinfo: { info_kind: 'bridge' } },
    { ifindex: 4, ifname: 'wvh1', flags: ['UP'], mtu: 1450, master: 'wvb1', address: '0e:00:00:00:00:01', linkinfo: { info_kind: 'veth' }, ifalias: 'weave:h1' },
  ]);
  const s = scripted({ 'link show': { stdout: links }, 'route show default': { stdout: '[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"}]' } });
  const k = new LinuxKernel({ exec: s.exec });
  expect(await k.listLinks()).toEqual([
    { name: 'lo', kind: null, master: null, mtu: 65536, mac: '00:00:00:00:00:00', up: true, owner: null },
    { name: 'eth0', kind: null, master: null, mtu: 9001, mac: '52:54:00:00:00:01', up: true, owner: null },
    { name: 'wvb1', kind: 'bridge', master: null, mtu: 1450, mac: '7a:00:00:00:00:01', up: false, owner: null },
    { name: 'wvh1', kind: 'veth', master: 'wvb1', mtu: 1450, mac: '0e:00:00:00:00:01', up: true, owner: 'h1' },
  ]);
  expect(await k.underlayMtu()).toBe(9001);
  expect(await new LinuxKernel({ exec: scripted({ 'route show': { stdout: '[]' } }).exec }).underlayMtu()).toBeNull();
});

it('adds only missing rules, removes stale ones of the bridge, and leaves other bridges alone', async () => {
  const listing = [
    '-N WEAVE-FORWARD',
    '-A WEAVE-FORWARD -i wvb1 -o wvb1 -m comment --comment "weave:wvb1" -j ACCEPT',
    '-A WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment "weave:wvb1" -j DROP',
    '-A WEAVE-FORWARD -i wvb2 -o wvb2 -m comment --comment "weave:wvb2" -j ACCEPT',
  ].join('\n');
  const s = scripted({
    '-S WEAVE-FORWARD': { stdout: listing },
    '-S WEAVE-POSTROUTING': { code: 1, stderr: 'iptables: No chain/target/match by that name.' },
    '-C WEAVE-FORWARD -i wvb1 ! -o wvb1': { code: 1, stderr: 'iptables: Bad rule (does a matching rule exist in that chain?).' },
    '-C WEAVE-FORWARD -o wvb1': { code: 1, stderr: 'iptables: Bad rule' },
    '-C WEAVE-POSTROUTING': { code: 1, stderr: 'iptables: Bad rule' },
  });
  await new LinuxKernel({ exec: s.exec }).ensureFirewall({ bridge: 'wvb1', internal: false, masquerade: ['10.77.0.0/24'] });
  expect(s.ran.filter((c) => !c.includes(' -S ') && !c.includes(' -C '))).toEqual([
    'iptables -w 5 -t filter -D WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment weave:wvb1 -j DROP',
    'iptables -w 5 -t filter -A WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment weave:wvb1 -j ACCEPT',
    'iptables -w 5 -t filter -A WEAVE-FORWARD -o wvb1 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment weave:wvb1 -j ACCEPT',
    'iptables -w 5 -t nat -A WEAVE-POSTROUTING -s 10.77.0.0/24 ! -o wvb1 -m comment --comment weave:wvb1 -j MASQUERADE',
    // The same in ip6tables, but for the NAT: an --ipv6 network is kept apart there too.
    'cat /proc/sys/net/ipv6/conf/all/disable_ipv6',
    'ip6tables -w 5 -t filter -D WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment weave:wvb1 -j DROP',
    'ip6tables -w 5 -t filter -A WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment weave:wvb1 -j ACCEPT',
    'ip6tables -w 5 -t filter -A WEAVE-FORWARD -o wvb1 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment weave:wvb1 -j ACCEPT',
  ]);
  const r = scripted({ '-S WEAVE-FORWARD': { stdout: listing }, '-S WEAVE-POSTROUTING': { stdout: '-N WEAVE-POSTROUTING' } });
  await new LinuxKernel({ exec: r.exec }).removeFirewall('wvb1');
  expect(r.ran.filter((c) => c.includes(' -D '))).toEqual([
    'iptables -w 5 -t filter -D WEAVE-FORWARD -i wvb1 -o wvb1 -m comment --comment weave:wvb1 -j ACCEPT',
    'iptables -w 5 -t filter -D WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment weave:wvb1 -j DROP',
    'ip6tables -w 5 -t filter -D WEAVE-FORWARD -i wvb1 -o wvb1 -m comment --comment weave:wvb1 -j ACCEPT',
    'ip6tables -w 5 -t filter -D WEAVE-FORWARD -i wvb1 ! -o wvb1 -m comment --comment weave:wvb1 -j DROP',
  ]);
  expect(await new LinuxKernel({ exec: r.exec }).firewallBridges()).toEqual(['wvb1', 'wvb2']);
});

it('creates the chains once and jumps to them from the top', async () => {
  const s = scripted({
    '-N WEAVE-FORWARD': { code: 1, stderr: 'iptables: Chain already exists.' },
    '-C FORWARD': { code: 1, stderr: 'iptables: Bad rule' },
  });
  await new LinuxKernel({ exec: s.exec }).ensureFirewallChains();
  expect(s.ran).toEqual([
    'iptables -w 5 -t filter -N WEAVE-FORWARD',
    'iptables -w 5 -t filter -N WEAVE-ISOLATE',
    'iptables -w 5 -t nat -N WEAVE-POSTROUTING',
    'iptables -w 5 -t nat -N WEAVE-PORTS',
    'iptables -w 5 -t nat -N WEAVE-DNS',
    'iptables -w 5 -t raw -N WEAVE-PREROUTING',
    'iptables -w 5 -t filter -C FORWARD -j WEAVE-FORWARD',
    'iptables -w 5 -t filter -I FORWARD 1 -j WEAVE-FORWARD',
    'iptables -w 5 -t nat -C POSTROUTING -j WEAVE-POSTROUTING',
    'iptables -w 5 -t filter -C WEAVE-FORWARD -i wvb+ -o wvb+ -j WEAVE-ISOLATE',
    'iptables -w 5 -t filter -C WEAVE-ISOLATE -j DROP',
    'iptables -w 5 -t nat -C PREROUTING ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j WEAVE-PORTS',
    'iptables -w 5 -t nat -C OUTPUT -m addrtype --dst-type LOCAL -j WEAVE-PORTS',
    'iptables -w 5 -t filter -C WEAVE-ISOLATE -m conntrack --ctstate DNAT -j RETURN',
    'iptables -w 5 -t raw -C PREROUTING -j WEAVE-PREROUTING',
    'iptables -w 5 -t raw -C WEAVE-PREROUTING -d 127.0.0.0/8 -i wvb+ -j DROP',
    'iptables -w 5 -t nat -C PREROUTING -i wvb+ -j WEAVE-DNS',
    // ip6tables gets the filter chains and jumps: isolation between networks, for IPv6 too.
    'cat /proc/sys/net/ipv6/conf/all/disable_ipv6',
    'ip6tables -w 5 -t filter -N WEAVE-FORWARD',
    'ip6tables -w 5 -t filter -N WEAVE-ISOLATE',
    'ip6tables -w 5 -t filter -C FORWARD -j WEAVE-FORWARD',
    'ip6tables -w 5 -t filter -I FORWARD 1 -j WEAVE-FORWARD',
    'ip6tables -w 5 -t filter -C WEAVE-FORWARD -i wvb+ -o wvb+ -j WEAVE-ISOLATE',
    'ip6tables -w 5 -t filter -C WEAVE-ISOLATE -j DROP',
    'ip6tables -w 5 -t filter -C WEAVE-ISOLATE -m conntrack --ctstate DNAT -j RETURN',
  ]);
});

it('leaves ip6tables alone on a host without IPv6 (ipv6.disable=1)', async () => {
  const s = scripted({ 'cat /proc/sys/net/ipv6': { code: 1, stderr: 'cat: /proc/sys/net/ipv6/conf/all/disable_ipv6: No such file or directory' } });
  const k = new LinuxKernel({ exec: s.exec });
  await k.ensureFirewallChains();
  await k.ensureFirewall({ bridge: 'wvb1', internal: true, masquerade: [] });
  await k.removeFirewall('wvb1');
  expect(await k.firewallBridges()).toEqual([]);
  expect(s.ran.filter((c) => c.startsWith('ip6tables'))).toEqual([]);
  // Asked once.
  expect(s.ran.filter((c) => c.startsWith('cat /proc/sys/net/ipv6'))).toHaveLength(1);
});

it("publishes an endpoint's ports: hairpin on its veth, loopback routed by its bridge, its rules exactly", async () => {
  const stale = '-A WEAVE-PORTS -p tcp -m tcp --dport 9090 -m comment --comment "weave-port:wvb1/wvh2" -j DNAT --to-destination 10.77.0.2:90';
  const other = '-A WEAVE-PORTS -p tcp -m tcp --dport 7070 -m comment --comment "weave-port:wvb1/wvh3" -j DNAT --to-destination 10.77.0.3:70';
  const s = scripted({ '-S WEAVE-PORTS': { stdout: ['-N WEAVE-PORTS', stale, other].join('\n') }, ' -C ': { code: 1, stderr: 'iptables: Bad rule' } });
  const k = new LinuxKernel({ netns: 'wvt-x', exec: s.exec, ipv4ConfDir: '/run/weave/ipv4-conf' });
  await k.ensurePortRules({ bridge: 'wvb1', hostVeth: 'wvh2', ports: [{ protocol: 'tcp', hostIp: null, hostPort: 8080, containerIp: '10.77.0.2', containerPort: 80 }] });
  const ns = 'nsenter --net=/run/netns/wvt-x -- ';
  expect(s.ran.filter((c) => !c.includes(' -S ') && !c.includes(' -C ')).map((c) => c.replace(ns, ''))).toEqual([
    'ip link set dev wvh2 type bridge_slave hairpin on',
    'tee /run/weave/ipv4-conf/wvb1/route_localnet <<< 1',
    'iptables -w 5 -t nat -D WEAVE-PORTS -p tcp -m tcp --dport 9090 -m comment --comment weave-port:wvb1/wvh2 -j DNAT --to-destination 10.77.0.2:90',
    'iptables -w 5 -t nat -A WEAVE-PORTS -p tcp -m tcp --dport 8080 -m comment --comment weave-port:wvb1/wvh2 -j DNAT --to-destination 10.77.0.2:80',
    'iptables -w 5 -t filter -A WEAVE-FORWARD -d 10.77.0.2/32 ! -i wvb1 -o wvb1 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment weave-port:wvb1/wvh2 -j ACCEPT',
    'iptables -w 5 -t nat -A WEAVE-POSTROUTING -s 10.77.0.2/32 -d 10.77.0.2/32 -p tcp -m tcp --dport 80 -m comment --comment weave-port:wvb1/wvh2 -j MASQUERADE',
    'iptables -w 5 -t nat -A WEAVE-POSTROUTING -s 127.0.0.0/8 -d 10.77.0.2/32 -p tcp -m tcp --dport 80 -m comment --comment weave-port:wvb1/wvh2 -j MASQUERADE',
  ]);
  expect(await k.portRuleOwners()).toEqual([
    { bridge: 'wvb1', hostVeth: 'wvh2' },
    { bridge: 'wvb1', hostVeth: 'wvh3' },
  ]);
});

it('says what to mount when the loopback cannot be routed (a read-only /proc/sys in a container)', async () => {
  const s = scripted({ tee: { code: 1, stderr: 'tee: /proc/sys/net/ipv4/conf/wvb1/route_localnet: Read-only file system' } });
  const k = new LinuxKernel({ exec: s.exec });
  const ports = [{ protocol: 'tcp' as const, hostIp: '127.0.0.1', hostPort: 8080, containerIp: '10.77.0.2', containerPort: 80 }];
  await expect(k.ensurePortRules({ bridge: 'wvb1', hostVeth: 'wvh2', ports })).rejects.toThrow(/route_localnet=1.*Read-only file system/);
  await expect(k.ensurePortRules({ bridge: 'wvb1', hostVeth: 'wvh2', ports })).rejects.toThrow(/WEAVE_IPV4_CONF_DIR/);
  // Published on another address only, the loopback is not needed.
  const t = scripted({ ' -C ': { code: 1, stderr: 'iptables: Bad rule' } });
  await new LinuxKernel({ exec: t.exec }).ensurePortRules({ bridge: 'wvb1', hostVeth: 'wvh2', ports: [{ ...ports[0]!, hostIp: '192.0.2.1' }] });
  expect(t.ran.some((c) => c.startsWith('tee'))).toBe(false);
});

it('reads the ports in use from the nat table and ss, and the ephemeral range', async () => {
  const s = scripted({
    'iptables -w 5 -t nat -S': { stdout: '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.2:80' },
    'ss -H': { stdout: 'udp UNCONN 0 0 0.0.0.0:5353 0.0.0.0:*' },
    ip_local_port_range: { stdout: '32768\t60999\n' },
  });
  const k = new LinuxKernel({ exec: s.exec });
  expect((await k.portsInUse()).map((p) => `${p.hostPort}/${p.protocol}`)).toEqual(['18080/tcp', '5353/udp']);
  expect(await k.ephemeralPorts()).toEqual({ first: 32768, last: 60999 });
  expect(s.ran).toEqual(['iptables -w 5 -t nat -S', 'ss -H -l -n -t -u -p', 'cat /proc/sys/net/ipv4/ip_local_port_range']);
});
