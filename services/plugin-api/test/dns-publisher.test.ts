import { DnsRecord, dnsKey } from '@weave/contracts';
import { UnavailableError } from '@weave/errors';
import { waitFor } from '@weave/testing';
import pino from 'pino';
import type { DnsAttachment } from '../src/dns/docker-attachments';
import { FakeDnsDocker } from '../src/dns/docker-attachments-fake';
import { MemoryIpamHosts } from '../src/dns/ipam-hosts';
import { DnsPublisher } from '../src/dns/publisher';
import { MemoryDnsRecords } from '../src/dns/record-store';
import { liveHost, reclaimedHost } from './ipam-host-records';

const id = (c: string): string => c.repeat(64);
const web: DnsAttachment = { containerId: id('1'), containerName: 'web', network: 'weave:foo', endpointId: id('a'), aliases: ['api'], addresses: ['10.32.0.5'] };
const db: DnsAttachment = { containerId: id('2'), containerName: 'db', network: 'weave:foo', endpointId: id('b'), aliases: [], addresses: ['10.32.0.6'] };

const running: DnsPublisher[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
});

function publisher({ registered = true, ...o }: { debounceMs?: number; resyncMs?: number; registered?: boolean } = {}) {
  const docker = new FakeDnsDocker();
  const store = new MemoryDnsRecords();
  const ipamHosts = registered ? MemoryIpamHosts.live('h1') : new MemoryIpamHosts();
  const events: Array<{ kind: string; data: { names: string[] } }> = [];
  const warnings: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
  const pub = new DnsPublisher({ host: 'h1', driver: 'weave', docker, store, ipamHosts, events: { publish: (kind: string, data: { names: string[] }) => events.push({ kind, data }) } as never, log, debounceMs: 20, resyncMs: 60_000, ...o });
  running.push(pub);
  return { docker, store, ipamHosts, events, warnings, pub };
}

test('the first pass publishes the running containers, and a burst of events makes one more pass', async () => {
  const { docker, store, events, pub } = publisher();
  docker.attachments = [web];
  pub.start();
  await waitFor(() => store.rows.has(dnsKey('h1', web.endpointId)), { what: 'web published', timeoutMs: 2000 });
  expect(store.rows.get(dnsKey('h1', web.endpointId))?.epoch).toBe(1);
  expect(events).toEqual([{ kind: 'dns.added', data: { containerId: web.containerId, network: 'weave:foo', names: ['web', 'api'], addresses: ['10.32.0.5'] } }]);

  const before = docker.listings;
  docker.attachments = [db];
  for (const action of ['disconnect', 'die', 'destroy']) docker.emit(action === 'disconnect' ? 'network' : 'container', action);
  await waitFor(() => store.rows.has(dnsKey('h1', db.endpointId)) && !store.rows.has(dnsKey('h1', web.endpointId)), { what: 'db in, web out', timeoutMs: 2000 });
  expect(docker.listings - before).toBe(1);
  expect(events.slice(1).map((e) => e.kind).sort()).toEqual(['dns.added', 'dns.removed']);
});

test("a rename publishes the new names and says which went; other hosts' records stay", async () => {
  const { docker, store, events, pub } = publisher();
  const other: DnsRecord = { host: 'h2', containerId: id('3'), endpointId: id('c'), network: 'weave:foo', names: ['web'], addresses: ['10.32.0.9'], epoch: 1 };
  store.rows.set(dnsKey('h2', other.endpointId), other);
  docker.attachments = [web];
  await pub.trigger();
  docker.attachments = [{ ...web, containerName: 'frontend' }];
  await pub.trigger();
  expect(store.rows.get(dnsKey('h1', web.endpointId))?.names).toEqual(['frontend', 'api']);
  expect(events.slice(1)).toEqual([
    { kind: 'dns.added', data: { containerId: web.containerId, network: 'weave:foo', names: ['frontend', 'api'], addresses: ['10.32.0.5'] } },
    { kind: 'dns.removed', data: { containerId: web.containerId, network: 'weave:foo', names: ['web'] } },
  ]);
  docker.attachments = [];
  await pub.trigger();
  expect([...store.rows.keys()]).toEqual([dnsKey('h2', other.endpointId)]);
});

test('a failing pass (Docker down, NATS without quorum) is logged and retried by the next trigger', async () => {
  const { docker, store, warnings, pub } = publisher();
  docker.attachments = [web];
  docker.failing = new UnavailableError('cannot reach the Docker engine at /var/run/docker.sock');
  await expect(pub.trigger()).resolves.toBeUndefined();
  store.failing = new UnavailableError('no quorum');
  docker.failing = null;
  await pub.trigger();
  expect(warnings.map((w) => w['msg'])).toEqual([expect.stringContaining('cannot reach the Docker engine'), expect.stringContaining('no quorum')]);
  expect(warnings[0]).toMatchObject({ host: 'h1', level: 40 });
  store.failing = null;
  await pub.trigger();
  expect(store.rows.size).toBe(1);
});

test('an invalid name is warned about once, not on every pass', async () => {
  const { docker, store, warnings, pub } = publisher();
  docker.attachments = [{ ...web, aliases: ['not valid!'] }];
  await pub.trigger();
  await pub.trigger();
  expect(store.rows.get(dnsKey('h1', web.endpointId))?.names).toEqual(['web']);
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatchObject({ containerId: web.containerId, name: 'not valid!' });
});

test('passes never overlap: triggers during a pass make exactly one more', async () => {
  const { docker, pub } = publisher();
  let release!: () => void;
  docker.gate = new Promise((r) => (release = r));
  const first = pub.trigger();
  const more = [pub.trigger(), pub.trigger(), pub.trigger()];
  docker.emit('container', 'start');
  await new Promise((r) => setTimeout(r, 50));
  release();
  docker.gate = null;
  await Promise.all([first, ...more]);
  await pub.trigger();
  expect(docker.maxConcurrent).toBe(1);
  expect(docker.listings).toBe(3);
});

test('the periodic pass catches what no event announced', async () => {
  const { docker, store, pub } = publisher({ resyncMs: 50 });
  pub.start();
  await waitFor(() => docker.listings > 0, { what: 'the first pass' });
  docker.attachments = [db];
  await waitFor(() => store.rows.has(dnsKey('h1', db.endpointId)), { what: 'db published by the periodic pass', timeoutMs: 2000 });
});

const reclaimedBy = (by: string, epoch: number) => reclaimedHost(epoch, by);

test('nothing is published before ipam registered this host; its registration brings the names at once', async () => {
  const { docker, store, ipamHosts, warnings, pub } = publisher({ registered: false });
  docker.attachments = [web];
  pub.start();
  await pub.trigger();
  expect(store.rows.size).toBe(0);
  ipamHosts.rows.set('h1', reclaimedBy('h2', 2));
  ipamHosts.changed();
  await waitFor(() => warnings.length > 0, { what: 'the stand-by said', timeoutMs: 2000 });
  expect(warnings[0]?.['msg']).toContain('ipam on h2 reclaimed this host at epoch 2');
  ipamHosts.rows.set('h1', liveHost(2));
  await pub.trigger();
  expect(store.rows.get(dnsKey('h1', web.endpointId))?.epoch).toBe(2);
});

test("a host reclaimed by this one loses its names at once; a later pass leaves what it wrote back", async () => {
  const { store, ipamHosts, events, pub } = publisher();
  const lost: DnsRecord = { host: 'h3', containerId: id('3'), endpointId: id('c'), network: 'weave:foo', names: ['db'], addresses: ['10.32.0.9'], epoch: 4 };
  await store.put(dnsKey('h3', lost.endpointId), lost);
  pub.start();
  await pub.trigger();
  expect(store.rows.has(dnsKey('h3', lost.endpointId))).toBe(true);
  // Only the reclaim makes a pass: renewals do not.
  ipamHosts.rows.set('h3', reclaimedBy('h1', 5));
  ipamHosts.changed();
  await waitFor(() => !store.rows.has(dnsKey('h3', lost.endpointId)), { what: "h3's record removed", timeoutMs: 2000 });
  expect(events).toContainEqual({ kind: 'dns.removed', data: { containerId: lost.containerId, network: 'weave:foo', names: ['db'] } });
  // h3 is back: live at the reclaim's epoch, it writes its record again, and it stays.
  ipamHosts.rows.set('h3', liveHost(5));
  await store.put(dnsKey('h3', lost.endpointId), { ...lost, epoch: 5 });
  ipamHosts.rows.set('h3', reclaimedBy('h1', 5));
  await pub.trigger();
  expect(store.rows.get(dnsKey('h3', lost.endpointId))?.epoch).toBe(5);
});

test('this host, reclaimed, withdraws its own names, and writes them again once ipam has it live under the new epoch', async () => {
  const { docker, store, ipamHosts, events, pub } = publisher();
  docker.attachments = [web, db];
  await pub.trigger();
  expect(store.rows.size).toBe(2);
  ipamHosts.rows.set('h1', reclaimedBy('h2', 2));
  await pub.trigger();
  expect(store.rows.size).toBe(0);
  expect(events.filter((e) => e.kind === 'dns.removed').map((e) => e.data.names)).toEqual([['web', 'api'], ['db']]);
  // Back: db was moved to a fresh address meanwhile.
  ipamHosts.rows.set('h1', liveHost(2));
  docker.attachments = [web, { ...db, addresses: ['10.32.0.7'] }];
  await pub.trigger();
  expect([...store.rows.values()].map((r) => [r.names[0], r.addresses, r.epoch])).toEqual([
    ['web', ['10.32.0.5'], 2],
    ['db', ['10.32.0.7'], 2],
  ]);
});
