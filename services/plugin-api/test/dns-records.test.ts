import type { NatsConnection } from '@nats-io/transport-node';
import { encodeJson, kvKeys, openBucket } from '@weave/bus';
import { Buckets, DnsRecord, dnsKey, type HostRecord } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { useNats, waitFor } from '@weave/testing';
import { FakeDnsDocker } from '../src/dns/docker-attachments-fake';
import { KvIpamHosts } from '../src/dns/ipam-hosts';
import { DnsPublisher } from '../src/dns/publisher';
import { KvDnsRecords } from '../src/dns/record-store';
import { liveHost, reclaimedHost } from './ipam-host-records';

/** The KV writer against a real nats-server with JetStream. */
let nc: NatsConnection;
useNats((_, c) => (nc = c), 'test');

const id = (c: string): string => c.repeat(64);
const record = (host: string, endpoint: string, names: string[], epoch = 1): DnsRecord => ({
  host,
  containerId: id('1'),
  endpointId: id(endpoint),
  network: 'weave:foo',
  names,
  addresses: ['10.32.0.5', 'fd00::5'],
  epoch,
});
/** Writes a host's record as its ipam (or a reclaimer) would. */
const setHost = async (host: string, r: HostRecord): Promise<void> => void (await (await openBucket(nc, Buckets.ipamHosts)).put(host, encodeJson(r)));

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
  const ipamHosts = new KvIpamHosts(() => openBucket(nc, Buckets.ipamHosts), silentLogger());
  await setHost('h1', liveHost(3));
  const pub = new DnsPublisher({ host: 'h1', driver: 'weave', docker, store, ipamHosts, events: { publish: () => undefined }, log: silentLogger() });
  try {
    await pub.trigger();
    const kv = await openBucket(nc, Buckets.dns);
    expect((await kv.get(dnsKey('h1', web.endpointId)))?.json()).toEqual({
      host: 'h1',
      containerId: web.containerId,
      endpointId: web.endpointId,
      network: 'weave:foo',
      names: ['web', '111111111111'],
      addresses: ['10.32.0.5'],
      epoch: 3,
    });
    docker.attachments = [];
    await pub.trigger();
    expect(await kvKeys(kv)).toEqual([]);
  } finally {
    await pub.stop();
    await Promise.all([store.stop(), ipamHosts.stop()]);
  }
});

test('a deletion by revision spares a record written since it was read', async () => {
  const store = new KvDnsRecords(() => openBucket(nc, Buckets.dns), 'h1', silentLogger());
  try {
    const lost = record('h3', 'c', ['db']);
    await store.put(dnsKey('h3', lost.endpointId), lost);
    const seen = (await store.all()).get(dnsKey('h3', lost.endpointId));
    await store.put(dnsKey('h3', lost.endpointId), { ...lost, epoch: 2 });
    expect(await store.deleteAt(dnsKey('h3', lost.endpointId), seen?.revision ?? -1)).toBe(false);
    const now = (await store.all()).get(dnsKey('h3', lost.endpointId));
    expect(now?.value.epoch).toBe(2);
    expect(await store.deleteAt(dnsKey('h3', lost.endpointId), now?.revision ?? -1)).toBe(true);
    expect(await store.all()).toEqual(new Map());
  } finally {
    await store.stop();
  }
});

test("the reclaimer's publisher removes a reclaimed host's records as soon as the hosts bucket says so, and spares those it wrote back", async () => {
  const dns = await openBucket(nc, Buckets.dns);
  const [old, fresh, other] = [record('h3', 'c', ['db'], 1), record('h3', 'd', ['cache'], 2), record('h4', 'e', ['web'], 1)];
  for (const r of [old, fresh, other]) await dns.put(dnsKey(r.host, r.endpointId), encodeJson(r));
  await setHost('h1', liveHost(1));
  await setHost('h3', liveHost(1));
  await setHost('h4', liveHost(1));
  const store = new KvDnsRecords(() => openBucket(nc, Buckets.dns), 'h1', silentLogger());
  const ipamHosts = new KvIpamHosts(() => openBucket(nc, Buckets.ipamHosts), silentLogger());
  const removed: string[][] = [];
  const events = { publish: (kind: string, d: { names: string[] }) => void (kind === 'dns.removed' && removed.push(d.names)) };
  const pub = new DnsPublisher({ host: 'h1', driver: 'weave', docker: new FakeDnsDocker(), store, ipamHosts, events: events as never, log: silentLogger(), debounceMs: 10 });
  try {
    pub.start();
    await pub.trigger();
    expect((await kvKeys(dns)).sort()).toHaveLength(3);
    // h1's ipam reclaims h3 at epoch 2 (h3's `fresh` record stands for one written back under it).
    await setHost('h3', reclaimedHost(2, 'h1'));
    await waitFor(async () => !(await kvKeys(dns)).includes(dnsKey('h3', old.endpointId)), { what: "h3's old record removed", timeoutMs: 5000 });
    expect((await kvKeys(dns)).sort()).toEqual([dnsKey('h3', fresh.endpointId), dnsKey('h4', other.endpointId)].sort());
    expect(removed).toEqual([['db']]);
  } finally {
    await pub.stop();
    await Promise.all([store.stop(), ipamHosts.stop()]);
  }
});
