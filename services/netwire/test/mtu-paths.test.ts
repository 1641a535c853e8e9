import { fakeNetwire, networkSpec } from './helpers';

test("a new network's MTU is bounded by the narrowest path: the default route and the route to every peer", async () => {
  const t = fakeNetwire({ peerAddresses: () => ['10.254.254.12', '10.254.254.13'] });
  t.kernel.routes.set('10.254.254.13', 1400);
  const created = await t.netwire.createNetwork(networkSpec());
  expect(created.mtu).toBe(1336); // 1400 - the sleeve's 64
  expect(t.events.of('network.created')[0]).toMatchObject({ mtu: 1336 });
  // The user's MTU is the user's, whatever the paths.
  expect((await t.netwire.createNetwork(networkSpec({ mtu: 1450 }))).mtu).toBe(1450);
  // With no peer known, the default route alone decides, as before.
  expect((await fakeNetwire().netwire.createNetwork(networkSpec())).mtu).toBe(1436);
});
