import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { E2E_ENV, ProcessStack } from '@weave/e2e';
import { createFixture } from './fixture';
import type { Fixture } from './targets';

/** Namespaces of fuzz runs are `wvfz-<pid>-<hex>`: the pid tells a crashed run's leftovers from a live one's. */
const NS_PREFIX = 'wvfz-';

export const FUZZED_SERVICES = ['ipam', 'netwire', 'plugin-api', 'router'] as const;

export interface FuzzStack {
  stack: ProcessStack;
  fixture: Fixture;
  /** Stops the services and NATS and deletes the namespace; safe to call more than once. */
  stop(): Promise<void>;
}

/**
 * The four services as real processes on a real nats-server, with the fixture's state in place.
 * netwire works in a namespace of the run's own, so its bridges and veths never touch the
 * machine's; the router runs as a host identity of its own, whose netwire does not exist, so it
 * opens no TAPs and has nothing but its subjects to defend. No Docker is needed.
 */
export async function startFuzzStack(log: (msg: string) => void): Promise<FuzzStack> {
  for (const ns of leftoverNamespaces()) {
    log(`removing namespace ${ns}, left by a fuzz run that is gone`);
    await ip('netns', 'del', ns).catch(() => undefined);
  }
  const netns = `${NS_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`;
  await ip('netns', 'add', netns);
  const routerHost = `fuzzr-${randomBytes(4).toString('hex')}`;
  const stack = new ProcessStack(
    {
      ...E2E_ENV,
      WEAVE_NETNS: netns,
      WEAVE_CATALOGUE: 'off',
      // The fixture's network exists for plugin-api but not for Docker, so reconciliation must
      // never find it old enough to drop: it would be a change the fuzzing did not make.
      WEAVE_RECONCILE_GRACE_MS: '86400000',
      WEAVE_RECONCILE_INTERVAL_MS: '86400000',
      // Refusals are logged at warn: info keeps thousands of them from being joined by debug lines.
      WEAVE_LOG_LEVEL: 'info',
    },
    {
      services: FUZZED_SERVICES,
      // The fast path off: its guard rules and probe device would outlive the run in this namespace.
      serviceEnv: { router: { WEAVE_HOST: routerHost, WEAVE_ADVERTISE_ADDR: '127.0.0.1', WEAVE_ROUTER_PORT: String(await freeUdpPort()), WEAVE_FASTPATH: 'off' } },
    },
  );
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await stack.stop().catch((e: Error) => log(`stopping the stack: ${e.message}`));
      await ip('netns', 'del', netns).catch((e: Error) => log(`deleting namespace ${netns}: ${e.message}`));
    })());
  try {
    await stack.start();
    const fixture = await createFixture(stack.socket, stack.host, routerHost);
    return { stack, fixture, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

function leftoverNamespaces(): string[] {
  let all: string[];
  try {
    all = readdirSync('/run/netns');
  } catch {
    return [];
  }
  return all.filter((ns) => {
    const pid = Number(new RegExp(`^${NS_PREFIX}(\\d+)-`).exec(ns)?.[1] ?? NaN);
    return Number.isInteger(pid) && !alive(pid);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ip(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('ip', args, (err, _out, stderr) => (err ? reject(new Error(`ip ${args.join(' ')}: ${String(stderr).trim() || err.message}`)) : resolve())),
  );
}

/** A UDP port free on loopback now, for the router's sleeve. */
function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
