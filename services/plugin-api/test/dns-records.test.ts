import type { NatsConnection } from '@nats-io/transport-node';
import { encodeJson, kvKeys, openBucket } from '@weave/bus';
import { Buckets, DnsRecord, dnsKey } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { useNats } from '@weave/testing';
import { FakeDnsDocker } from '../src/dns/docker-attachments-fake';
import { DnsPublisher } from '../src/dns/publisher';
import { KvDnsRecords } from '../src/dns/record-store';

/** The KV writer against a real nats-server with JetStream. */
let nc: NatsConnection;
useNats((_, c) => (nc = c), 'test');

const id = (c: string): string => c.repeat(64);
const record = (host: string, endpoint: string, names: string[]): DnsRecord => ({ host, containerId: id('1'), endpointId: id(endpoint), network: 'weave:foo', names, addresses: ['10.32.0.5', 'fd00::5'] });

test("the store lists only this host's keys, and each write is in the next listing", async () => {
  const kv = await openBucket(nc, Buckets.dns);
  const h10 = record('h10', 'c', ['db']);
  await kv.put(dnsKey('h10', h10.endpointId), encodeJson(h10));
  const store = new KvDnsRecords(() => openBucket(nc, Buckets.dns), 'h1', silentLogger());
  try {
    expect(await store.list()).toEqual(new Map());
    const web = record('h1', 'a', ['web']);
    await store.put(dnsKey('h1', web.endpointId), web);
    expect(await store.list()).toEqual(new Map([[dnsKey('h1', web.endpointId), web]]));
    await store.delete(dnsKey('h1', web.endpointId));
    expect(await store.list()).toEqual(new Map());
    expect(await kvKeys(kv)).toEqual([dnsKey('h10', h10.endpointId)]);
  } finally {
    await store.stop();
  }
});

test('the publisher keeps the bucket in line with Docker, opening the bucket itself', async () => {
  const docker = new FakeDnsDocker();
  const web = { containerId: id('1'), containerName: 'Web', network: 'weave:foo', endpointId: id('a'), aliases: ['111111111111'], addresses: ['10.32.0.5'] };
  docker.attachments = [web];
  const store = new KvDnsRecords(() => openBucket(nc, Buckets.dns), 'h1', silentLogger());
  const pub = new DnsPublisher({ host: 'h1', driver: 'weave', docker, store, events: { publish: () => undefined }, log: silentLogger() });
  try {
    await pub.trigger();
    const kv = await openBucket(nc, Buckets.dns);
    expect((await kv.get(dnsKey('h1', web.endpointId)))?.json()).toEqual({ host: 'h1', containerId: web.containerId, endpointId: web.endpointId, network: 'weave:foo', names: ['web', '111111111111'], addresses: ['10.32.0.5'] });
    docker.attachments = [];
    await pub.trigger();
    expect(await kvKeys(kv)).toEqual([]);
  } finally {
    await pub.stop();
    await store.stop();
  }
});
