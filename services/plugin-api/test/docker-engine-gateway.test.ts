import { bareGateway } from '../src/catalogue/docker-engine';

// What `GET /networks/<id>` of Docker 20.10 shows for a network made with --ipv6 and our IPAM:
// {"Subnet":"10.32.0.0/24","Gateway":"10.32.0.1"},{"Subnet":"fd82:d06d:3bc8::/64","Gateway":"fd82:d06d:3bc8::1/64"}.
test.each([
  ['10.32.0.1', '10.32.0.1'],
  ['fd82:d06d:3bc8::1/64', 'fd82:d06d:3bc8::1'],
  ['fd82:d06d:3bc8::1', 'fd82:d06d:3bc8::1'],
  ['10.32.0.1/24', '10.32.0.1'],
  ['', null],
  [undefined, null],
])('the catalogue keeps Docker\'s gateway %p as %p', (docker, kept) => {
  expect(bareGateway(docker)).toBe(kept);
});
