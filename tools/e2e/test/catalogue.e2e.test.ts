import { kvGet, openBucket } from '@weave/bus';
import { Buckets, CatalogueEntry } from '@weave/contracts';
import { waitFor } from '@weave/testing';
import { ProcessStack, useStack } from '../src';

/**
 * The network catalogue against the real engine: what `docker network create` and `rm` do on
 * this host reaches the mesh-wide catalogue, through Docker's own events and inspect output.
 * (Replication to other hosts is tested with fake engines in plugin-api, and across simulated
 * hosts by the mesh suites.)
 */
let stack: ProcessStack;
const scope = useStack((s) => (stack = s));

test('create publishes the network with its subnet; rm leaves a tombstone', async () => {
  const kv = await openBucket(stack.nc, Buckets.catalogue);
  const name = await scope.network(stack.plugin, ['--subnet', '10.251.40.0/24', '--ip-range', '10.251.40.128/25', '--internal']);
  const key = Buffer.from(name).toString('base64url');
  const entry = await waitFor(async () => (await kvGet(kv, key, CatalogueEntry))?.value, { what: `${name} in the catalogue`, timeoutMs: 5000 });
  expect(entry).toMatchObject({ state: 'active', name, internal: true, createdBy: stack.host, subnets: [{ subnet: '10.251.40.0/24', ipRange: '10.251.40.128/25' }] });
  await scope.removeNetwork(name);
  await waitFor(async () => (await kvGet(kv, key, CatalogueEntry))?.value.state === 'removed', { what: `${name} tombstoned`, timeoutMs: 5000 });
});
