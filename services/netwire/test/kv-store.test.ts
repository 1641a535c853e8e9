import type { NatsConnection } from '@nats-io/transport-node';
import { kvGet, openBucket } from '@weave/bus';
import { Buckets } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { NatsServer, useNats } from '@weave/testing';
import { EndpointRecord, KvStore } from '../src/store';
import { newId } from './helpers';

let server: NatsServer;
let nc: NatsConnection;
useNats((s, c) => ((server = s), (nc = c)));

const endpoint = (o: Partial<EndpointRecord> = {}): EndpointRecord => ({
  networkId: newId(),
  endpointId: newId(),
  address: '10.77.0.2/24',
  addressV6: null,
  mac: '02:42:0a:4d:00:02',
  macGenerated: true,
  hostVeth: 'wvh00000000001',
  containerVeth: 'wvc00000000001',
  ...o,
});

test('records survive a restart of the process (a new store on the same bucket)', async () => {
  const kv = await openBucket(nc, Buckets.netwire);
  const a = new KvStore(kv, 'h1', silentLogger());
  await a.listEndpoints();
  const ep = endpoint();
  await a.putEndpoint(ep);
  await a.putEndpoint({ ...ep, address: '10.77.0.3/24' });
  const b = new KvStore(kv, 'h1', silentLogger());
  expect(await b.getEndpoint(ep.endpointId)).toEqual({ ...ep, address: '10.77.0.3/24' });
  expect((await b.listEndpoints()).map((e) => e.endpointId)).toContain(ep.endpointId);
  await b.deleteEndpoint(ep.endpointId);
  expect(await new KvStore(kv, 'h1', silentLogger()).getEndpoint(ep.endpointId)).toBeNull();
});

test('a write by someone else is noticed, and ours still lands', async () => {
  const kv = await openBucket(nc, Buckets.netwire);
  const store = new KvStore(kv, 'h2', silentLogger());
  const ep = endpoint();
  await store.putEndpoint(ep);
  await kv.put(`h2.ep.${ep.endpointId}`, JSON.stringify({ ...ep, address: '10.77.0.99/24' }));
  await store.putEndpoint({ ...ep, address: '10.77.0.4/24' });
  expect((await kvGet(kv, `h2.ep.${ep.endpointId}`, EndpointRecord))?.value.address).toBe('10.77.0.4/24');
  await kv.put(`h2.ep.${ep.endpointId}`, JSON.stringify(ep));
  await store.deleteEndpoint(ep.endpointId);
  expect(await kvGet(kv, `h2.ep.${ep.endpointId}`, EndpointRecord)).toBeNull();
});
