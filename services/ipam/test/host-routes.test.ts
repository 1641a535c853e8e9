import { InternalError } from '@weave/errors';
import { formatCidr } from '@weave/netaddr';
import { addressPrefixes, KernelRoutes, routePrefixes } from '../src/host-routes';

// Trimmed from `ip -j route show table all` and `ip -j addr` on a Docker host with two weave bridges.
const ROUTES = JSON.stringify([
  { dst: 'default', gateway: '192.0.2.1', dev: 'eth0', flags: [] },
  { dst: '10.32.0.0/24', dev: 'wvb8d3280b0bc8', protocol: 'kernel', scope: 'link', prefsrc: '10.32.0.1', flags: [] },
  { dst: '172.17.0.0/16', dev: 'docker0', protocol: 'kernel', scope: 'link', flags: ['linkdown'] },
  { type: 'local', dst: '10.32.0.1', dev: 'wvb8d3280b0bc8', table: 'local', protocol: 'kernel', scope: 'host', flags: [] },
  { type: 'broadcast', dst: '10.32.0.255', dev: 'wvb8d3280b0bc8', table: 'local', scope: 'link', flags: [] },
  { type: 'unreachable', dst: 'default', table: 'unspec', flags: [] },
  { type: 'multicast', dst: 'ff00::/8', dev: 'eth0', table: 'local', flags: [] },
  { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel', flags: [] },
]);
const ADDRS = JSON.stringify([
  { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }, { family: 'inet6', local: '::1', prefixlen: 128 }] },
  { ifname: 'ifb0', addr_info: [] },
  { ifname: 'eth0', addr_info: [{ family: 'inet', local: '192.0.2.2', prefixlen: 24 }, { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] },
  { ifname: 'tun9' },
]);

describe('host routes', () => {
  it('keeps every route but the default ones', () => {
    expect(routePrefixes(ROUTES).map(formatCidr)).toEqual(['10.32.0.0/24', '172.17.0.0/16', '10.32.0.1/32', '10.32.0.255/32', 'ff00::/8', 'fe80::/64']);
  });

  it('turns addresses into their subnets', () => {
    expect(addressPrefixes(ADDRS).map(formatCidr)).toEqual(['127.0.0.0/8', '::1/128', '192.0.2.0/24', 'fe80::/64']);
  });

  it.each(['', '[]'])('reads %j as nothing', (out) => {
    expect(routePrefixes(out)).toEqual([]);
  });

  it('says which output it could not read', () => {
    expect(() => routePrefixes('Error: ipv4: FIB table does not exist.')).toThrow(InternalError);
    expect(() => addressPrefixes('{"not":"a list"}')).toThrow(/ip -j addr/);
  });

  it('asks iproute2 for routes of all tables and for addresses', async () => {
    const calls: string[] = [];
    const routes = new KernelRoutes(async (args) => {
      calls.push(args.join(' '));
      return args.includes('route') ? ROUTES : ADDRS;
    });
    expect((await routes.prefixes()).map(formatCidr)).toContain('192.0.2.0/24');
    expect(calls.sort()).toEqual(['-j addr', '-j route show table all']);
  });
});
