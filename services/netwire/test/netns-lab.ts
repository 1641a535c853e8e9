import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { rpcClient, subscribeEvents } from '@weave/bus';
import { EventEnvelope, netwireRpc } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { NatsServer, useNats } from '@weave/testing';
import { LinuxKernel, RunningNetwire, startNetwire } from '../src';

/**
 * The real LinuxKernel and the whole service over a real nats-server, inside throwaway network
 * namespaces: `wvt-<random>` plays the Docker host, and one more namespace per "container".
 * Nothing here touches the machine's own namespace, and all traffic stays between the
 * namespaces a test made (they have no link to anything else).
 */
const run = promisify(execFile);
export const isRoot = process.getuid?.() === 0;

export const sh = async (file: string, ...args: string[]): Promise<string> => (await run(file, args, { timeout: 15_000 })).stdout;
export const inNs = (ns: string, file: string, ...args: string[]): Promise<string> => sh('nsenter', `--net=/run/netns/${ns}`, '--', file, ...args);
const pingArgs = existsSync('/usr/bin/ping') || existsSync('/bin/ping') ? ['ping'] : ['busybox', 'ping'];
export const ping = (ns: string, address: string): Promise<boolean> =>
  inNs(ns, pingArgs[0]!, ...pingArgs.slice(1), '-c', '1', '-W', '1', address).then(
    () => true,
    () => false,
  );
export const rulesIn = async (ns: string): Promise<string[]> =>
  [...(await inNs(ns, 'iptables', '-S')).split('\n'), ...(await inNs(ns, 'iptables', '-t', 'nat', '-S')).split('\n')].filter(Boolean);
export const ourLinks = async (ns: string): Promise<string[]> =>
  (JSON.parse(await sh('ip', '-j', '-n', ns, 'link', 'show')) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => n.startsWith('wv'));

export type Host = Awaited<ReturnType<NetnsLab['host']>>;
export type NetnsLab = ReturnType<typeof useNetnsLab>;

/** A nats-server for the file, and namespaces and services that each test's end takes away. */
export function useNetnsLab() {
  let nc: NatsConnection;
  let nats: NatsServer;
  const namespaces: string[] = [];
  const services: RunningNetwire[] = [];
  const subs: Array<{ unsubscribe(): void }> = [];

  useNats((s, c) => ((nats = s), (nc = c)));
  afterEach(async () => {
    for (const s of subs.splice(0)) s.unsubscribe();
    for (const s of services.splice(0)) await s.stop().catch(() => undefined);
    // Deleting a namespace takes its links and its iptables state with it.
    for (const ns of namespaces.splice(0)) await sh('ip', 'netns', 'del', ns).catch(() => undefined);
  });

  async function newNs(suffix = ''): Promise<string> {
    const ns = `wvt-${randomBytes(4).toString('hex')}${suffix}`;
    await sh('ip', 'netns', 'add', ns);
    namespaces.push(ns);
    await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
    return ns;
  }

  /** A "Docker host" namespace whose FORWARD drops, as Docker's engine leaves it, and netwire in it. */
  async function host() {
    const ns = await newNs();
    await inNs(ns, 'iptables', '-P', 'FORWARD', 'DROP');
    const hostName = `h${randomBytes(4).toString('hex')}`;
    const kernel = new LinuxKernel({ netns: ns });
    const events: EventEnvelope[] = [];
    subs.push(subscribeEvents(nc, (e) => events.push(e), () => undefined, `weave.events.${hostName}.netwire.>`));
    await nc.flush();
    const start = async () => {
      const s = await startNetwire({ nc, host: hostName, kernel, log: silentLogger(), mtu: null });
      services.push(s);
      return s;
    };
    const service = await start();
    return { ns, hostName, kernel, events, service, start, client: rpcClient(nc, hostName, netwireRpc) };
  }

  /** What Docker does after Join: move the container end into the container and configure it. */
  async function plugContainer(hostNs: string, srcName: string, address: string, gateway: string) {
    const ns = await newNs('c');
    await sh('ip', '-n', hostNs, 'link', 'set', srcName, 'netns', ns);
    await inNs(ns, 'ip', 'link', 'set', srcName, 'name', 'eth0');
    await inNs(ns, 'ip', 'addr', 'add', address, 'dev', 'eth0');
    await inNs(ns, 'ip', 'link', 'set', 'eth0', 'up');
    await inNs(ns, 'ip', 'route', 'add', 'default', 'via', gateway);
    return ns;
  }

  return {
    newNs,
    host,
    plugContainer,
    get nc() {
      return nc;
    },
    get nats() {
      return nats;
    },
  };
}
