import { routeOf } from '../src';

test("a route's own MTU is read from `ip -j route get`, where iproute2 puts it (metrics)", () => {
  expect(routeOf([{ dst: '10.9.9.5', dev: 'd0', prefsrc: '10.9.9.1', flags: [], uid: 0, cache: [], metrics: [{ mtu: 1400 }] }])).toEqual({ dev: 'd0', mtu: 1400 });
  expect(routeOf([{ dst: '10.9.9.5', dev: 'd0', flags: [], cache: [] }])).toEqual({ dev: 'd0', mtu: null });
  expect(() => routeOf([])).toThrow();
});
