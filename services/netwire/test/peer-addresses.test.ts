import { PeerAddresses } from '../src/peer-addresses';

test("the router's peer events keep the list of addresses whose routes bound a network's MTU", () => {
  const p = new PeerAddresses();
  p.apply({ service: 'router', kind: 'peer.connected', data: { peer: 'h2', address: '10.0.0.2', port: 6784 } });
  p.apply({ service: 'router', kind: 'peer.connected', data: { peer: 'h3', address: '10.0.0.3', port: 6784 } });
  p.apply({ service: 'ipam', kind: 'peer.connected', data: { peer: 'h9', address: '10.0.0.9', port: 6784 } });
  expect(p.list()).toEqual(['10.0.0.2', '10.0.0.3']);
  p.apply({ service: 'router', kind: 'peer.disconnected', data: { peer: 'h2', reason: 'timeout' } });
  expect(p.list()).toEqual(['10.0.0.3']);
});
