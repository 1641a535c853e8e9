import { spawnSync } from 'node:child_process';
import { subscribeEvents } from '@weave/bus';
import { docker, dockerResult } from '@weave/docker-cli';
import { freePort, waitFor } from '@weave/testing';
import { DockerEndpoint, dockerEndpoints, DockerScope, E2E_ENV, ipamLeases, Link, ProcessStack, removeFastPathGuards, weaveLinkDetails, weaveRules } from '../src';

/**
 * Crashes lose nothing. A stream of container starts and removals runs on a weave network while
 * plugin-api, ipam, netwire, the router and the nats-server are each killed with SIGKILL in turn
 * and started again after a short outage (NATS keeps its JetStream store). Only calls made during
 * an outage may fail, with an error that says what was unavailable. Afterwards, once
 * reconciliation against Docker has run, Docker's view, ipam's leases, netwire's records and the
 * kernel's links agree: every running container has its interface and address and answers ping,
 * and nothing is left over.
 */
const OPS = Number(process.env.WEAVE_CRASH_OPS ?? 160);
const WORKERS = 4;
/** Live containers per worker stay between one and this many, so removals have something to remove. */
const MAX_LIVE = 3;
const OUTAGE_MS = 1500;
/** After a service answers again, calls may still fail for a moment (NATS reconnects, JetStream recovers). */
const MARGIN_MS = 5000;
const SUBNET = '10.251.50.0/24';
const VICTIMS = ['plugin-api', 'ipam', 'netwire', 'router', 'nats-server'] as const;
type Victim = (typeof VICTIMS)[number];
const SERVICES = ['ipam', 'netwire', 'router', 'plugin-api'] as const;
// The grace must be at least 2 RPC timeouts + 15 s (plugin-api refuses less); both short here so
// that leftovers of the last outage can be dropped soon after the stream ends.
const ENV = { ...E2E_ENV, WEAVE_RPC_TIMEOUT_MS: '4000', WEAVE_RECONCILE_GRACE_MS: '23000', WEAVE_RECONCILE_INTERVAL_MS: '5000', WEAVE_LOG_LEVEL: 'info' };

interface Call {
  op: 'run' | 'rm';
  container: string;
  start: number;
  end: number;
  error?: string;
}
interface Outage {
  victim: Victim;
  killedAt: number;
  backAt: number;
}

const hostVeth = (endpointId: string) => `wvh${endpointId.slice(0, 11)}`;
const ms = (t: number, t0: number) => `${((t - t0) / 1000).toFixed(1)}s`;

let stack: ProcessStack;
const scope = new DockerScope();
beforeAll(async () => {
  const routerPort = String(await freePort());
  stack = await new ProcessStack(ENV, { services: SERVICES, serviceEnv: { router: { WEAVE_ROUTER_PORT: routerPort } } }).start();
}, 120_000);
afterAll(async () => {
  await scope.cleanup();
  await stack?.stop();
  // The router keeps its fast-path guard when it stops (and a kill -9 leaves its probe device too,
  // until the next start): with the stack gone both are leftovers.
  await removeFastPathGuards();
  spawnSync('ip', ['link', 'del', 'wvprobe'], { stdio: 'ignore' }); // none there is fine
});

/**
 * The stream's budget: OPS starts and removals that succeed. A failed call gives its slot back
 * (it is counted as a failure, and the stream still reaches OPS), and its worker then waits for
 * the outage to end, as a user would retry once the service is back, rather than spin on it.
 */
class Stream {
  readonly calls: Call[] = [];
  private slots = 0;
  succeeded = 0;
  outage: Promise<unknown> | null = null;

  take(): boolean {
    if (this.slots >= OPS) return false;
    this.slots++;
    return true;
  }
  done(call: Call): void {
    this.calls.push(call);
    if (call.error === undefined) this.succeeded++;
    else this.slots--;
  }
}

/** Starts and removes containers until the stream's budget is spent; returns those still running. */
async function worker(net: string, stream: Stream): Promise<string[]> {
  const live: string[] = [];
  for (let i = 0; stream.take(); i++) {
    const remove = live.length >= MAX_LIVE || (live.length > 1 && i % 2 === 1);
    const container = remove ? live.shift()! : scope.name('crash');
    const start = Date.now();
    const r = remove ? await dockerResult(['rm', '-f', container]) : await scope.tryRun([`--net=${net}`], ['sleep', '1d'], container);
    const call: Call = { op: remove ? 'rm' : 'run', container, start, end: Date.now(), ...(r.ok ? {} : { error: r.err.stderr.trim() }) };
    stream.done(call);
    if (!remove && r.ok) live.push(container);
    if (r.ok) continue;
    // A failed start leaves the container Created, without an endpoint: it goes, uncounted.
    if (!remove) await scope.removeContainer(container);
    else live.unshift(container);
    await stream.outage;
  }
  return live;
}

async function outage(victim: Victim): Promise<Outage> {
  const killedAt = Date.now();
  if (victim === 'nats-server') await stack.nats.kill(true);
  else await stack.kill(victim);
  // The outage itself: the one fixed wait.
  await new Promise((r) => setTimeout(r, OUTAGE_MS));
  if (victim === 'nats-server') {
    await stack.nats.restart();
    for (const s of SERVICES) await waitFor(() => stack.ready(s), { what: `${s} to answer after NATS restarted`, timeoutMs: 60_000, intervalMs: 100 });
  } else {
    await stack.startService(victim);
  }
  return { victim, killedAt, backAt: Date.now() };
}

/** Everything the stack holds that Docker does not have, and everything Docker has that the stack lost. */
async function compare(net: string, untaggedBefore: ReadonlySet<string>) {
  const { networkId, endpoints } = await dockerEndpoints(net);
  const ids = new Set(endpoints.map((e) => e.endpointId));
  const ips = new Set(endpoints.map((e) => e.ipv4));
  const leases = (await ipamLeases(stack.nc, SUBNET)).filter((l) => l.host === stack.host && l.kind === 'endpoint');
  const status = await stack.netwire.status({});
  const records = status.endpoints.filter((e) => e.networkId === networkId);
  const bridge = status.networks.find((n) => n.networkId === networkId)?.bridge;
  const links = weaveLinkDetails();
  const tap = (await stack.router.status({})).networks.find((n) => n.networkId === networkId);
  // Our veth ends: tagged with our host, or untagged and new (a container end moved back by
  // Docker, or a veth whose creation a kill cut short before netwire could tag it).
  const ours = (l: Link) => /^wv[hc]/.test(l.name) && (l.owner === stack.host || (l.owner === null && !untaggedBefore.has(l.name)));
  const wanted = new Set(endpoints.map((e) => hostVeth(e.endpointId)));
  return {
    endpoints,
    leaked: {
      leases: leases.filter((l) => !ips.has(l.address)).map((l) => l.address),
      records: records.filter((r) => !ids.has(r.endpointId)).map((r) => r.endpointId.slice(0, 12)),
      veths: links.filter((l) => ours(l) && !wanted.has(l.name)).map((l) => l.name),
      bridges: links.filter((l) => l.kind === 'bridge' && l.owner === stack.host && l.name !== bridge).map((l) => l.name),
      taps: links.filter((l) => /^wvs/.test(l.name) && l.master === bridge && l.name !== tap?.tap).map((l) => l.name),
    },
    lost: {
      leases: endpoints.filter((e) => !leases.some((l) => l.address === e.ipv4)).map((e) => e.ipv4),
      records: endpoints.filter((e) => !records.some((r) => r.endpointId === e.endpointId && r.present)).map((e) => e.endpointId.slice(0, 12)),
      veths: [...wanted].filter((v) => !links.some((l) => l.name === v && l.master === bridge)),
      bridge: bridge && links.some((l) => l.name === bridge) ? [] : [String(bridge)],
      tap: tap?.attached && links.some((l) => l.name === tap.tap && l.master === bridge) ? [] : [String(tap?.tap)],
    },
  };
}
const total = (o: Record<string, string[]>) => Object.values(o).reduce((n, v) => n + v.length, 0);

test(`${OPS} container starts and removals with every service killed in turn: only calls during an outage fail, and nothing is lost or leaked`, async () => {
  const t0 = Date.now();
  const net = await scope.network(stack.plugin, ['--subnet', SUBNET]);
  const dropped = { leases: 0, endpoints: 0 };
  const untaggedBefore = new Set(weaveLinkDetails().flatMap((l) => (l.owner === null ? [l.name] : [])));
  const sub = subscribeEvents(
    stack.nc,
    (e) => {
      if (e.host !== stack.host) return;
      const d = e.data as { released?: unknown[]; removed?: unknown[] };
      if (e.kind === 'leases.reconciled') dropped.leases += d.released!.length;
      if (e.kind === 'endpoints.reconciled') dropped.endpoints += d.removed!.length;
    },
    () => undefined,
  );
  try {
    const stream = new Stream();
    const { calls } = stream;
    const workers = Promise.all(Array.from({ length: WORKERS }, () => worker(net, stream)));
    const outages: Outage[] = [];
    for (const [k, victim] of VICTIMS.entries()) {
      await waitFor(() => stream.succeeded >= ((k + 1) * OPS) / (VICTIMS.length + 1), { what: `${victim}'s turn`, timeoutMs: 120_000, intervalMs: 100 });
      const o = outage(victim);
      stream.outage = o;
      outages.push(await o);
      stream.outage = null;
    }
    const live = (await workers).flat();
    const streamEnd = Date.now();
    const before = await compare(net, untaggedBefore);

    // Reconciliation runs every 5 s; a pass asked for now may still spare leftovers of the last
    // outage (younger than the grace), so ask until nothing is left or it would be a real leak.
    const after = await waitFor(
      async () => {
        const r = await stack.pluginApi.reconcile({});
        const c = await compare(net, untaggedBefore);
        return r.problems.length === 0 && total(c.leaked) === 0 ? c : null;
      },
      { what: 'reconciliation to leave nothing Docker does not have', timeoutMs: 60_000, intervalMs: 1000 },
    ).catch(async (e) => {
      const c = await compare(net, untaggedBefore);
      throw new Error(`${(e as Error).message}; left: ${JSON.stringify(c.leaked)}`);
    });

    // Every running container still has its endpoint, address and veth, and answers ping.
    expect(after.lost).toEqual({ leases: [], records: [], veths: [], bridge: [], tap: [] });
    expect(after.endpoints.map((e) => e.container).sort()).toEqual([...live].sort());
    const byName = new Map<string, DockerEndpoint>(after.endpoints.map((e) => [e.container, e]));
    for (const [i, c] of live.entries()) {
      const ip = byName.get(c)!.ipv4;
      expect(await docker(['exec', c, 'ip', '-4', '-o', 'addr', 'show', 'eth0'])).toContain(` ${ip}/24 `);
      const from = live[(i + 1) % live.length]!;
      if (from !== c) expect(await docker(['exec', from, 'ping', '-c', '2', '-W', '2', ip])).toMatch(/[12] packets received/);
    }
    expect(new Set(after.endpoints.map((e) => e.ipv4)).size).toBe(after.endpoints.length);

    // Failures only inside an outage (plus the margin), each saying what was unavailable.
    const failed = calls.filter((c) => c.error !== undefined);
    // The latest outage that began before the call ended, if the call began before it was over.
    const during = (c: Call) => [...outages].reverse().find((o) => o.killedAt <= c.end && c.start <= o.backAt + MARGIN_MS);
    const outside = failed.filter((c) => !during(c));
    expect(outside.map((c) => `${c.op} ${ms(c.start, t0)}–${ms(c.end, t0)}: ${c.error}`)).toEqual([]);
    for (const c of failed) expect(c.error).toMatch(CLEAR_ERROR);

    const figures = {
      calls: calls.length,
      starts: calls.filter((c) => c.op === 'run').length,
      failedStarts: failed.filter((c) => c.op === 'run').length,
      removals: calls.filter((c) => c.op === 'rm').length,
      failedRemovals: failed.filter((c) => c.op === 'rm').length,
      outages: outages.map((o) => ({
        victim: o.victim,
        at: ms(o.killedAt, t0),
        downMs: o.backAt - o.killedAt,
        callsOverlapping: calls.filter((c) => c.start <= o.backAt && c.end >= o.killedAt).length,
        failed: failed.filter((c) => during(c) === o).length,
        errors: [...new Set(failed.filter((c) => during(c) === o).map((c) => c.error!.replace(/wte2e-\S+|[0-9a-f]{12,}/g, '…').slice(0, 200)))],
      })),
      leftoversAtStreamEnd: before.leaked,
      droppedByReconciliation: dropped,
      leftoversAfter: after.leaked,
      running: live.length,
      secondsStream: (streamEnd - t0) / 1000,
      secondsTotal: (Date.now() - t0) / 1000,
    };
    console.log(`crash test figures:\n${JSON.stringify(figures, null, 2)}`);
    expect(total(after.leaked)).toBe(0);

    // And removing it all through Docker, with every service up, leaves nothing of this host.
    const { networkId } = await dockerEndpoints(net);
    const tap = (await stack.router.status({})).networks.find((n) => n.networkId === networkId)!.tap;
    for (const c of live) await scope.removeContainer(c);
    await scope.removeNetwork(net);
    await waitFor(() => !weaveLinkDetails().some((l) => l.name === tap), { what: `the router to remove TAP ${tap}` });
    expect(weaveLinkDetails().filter((l) => l.owner === stack.host || (l.owner === null && !untaggedBefore.has(l.name)))).toEqual([]);
    expect((await stack.ipam.status({})).pools.filter((p) => p.pool === SUBNET)).toEqual([]);
    expect((await ipamLeases(stack.nc, SUBNET)).filter((l) => l.host === stack.host)).toEqual([]);
    expect((await stack.netwire.status({})).endpoints).toEqual([]);
  } finally {
    sub.unsubscribe();
  }
});

test('a network removed while ipam and netwire are down: Docker forgets it anyway, and reconciliation frees its subnet, bridge, rules and records', async () => {
  const subnet = '10.251.51.0/24';
  const net = await scope.network(stack.plugin, ['--subnet', subnet]);
  const { networkId } = await dockerEndpoints(net);
  const bridge = (await stack.netwire.status({})).networks.find((n) => n.networkId === networkId)!.bridge;
  await stack.kill('ipam');
  await stack.kill('netwire');
  // ReleaseAddress, ReleasePool and DeleteNetwork fail (no responder); Docker only logs that.
  await scope.removeNetwork(net);
  await stack.startService('ipam');
  await stack.startService('netwire');
  expect(weaveLinkDetails().some((l) => l.name === bridge && l.owner === stack.host)).toBe(true);
  // Until then, the subnet counts as used on this host: Docker lists no network with it, so the
  // reference may still be a create in flight, and a new create is told when to try again.
  await expect(scope.network(stack.plugin, ['--subnet', subnet])).rejects.toThrow(/subnet 10\.251\.51\.0\/24 was taken moments ago by a network being created on this host .* try again in \d+ s/);

  // Spared until older than the grace period, then dropped: by a pass this test asks for, or by
  // the periodic one (every 5 s here), so the end state is what is waited for.
  await waitFor(
    async () => {
      await stack.pluginApi.reconcile({});
      const pools = (await stack.ipam.status({})).pools.filter((p) => p.pool === subnet && (p.holders[stack.host] ?? 0) > 0);
      const networks = (await stack.netwire.status({})).networks.filter((n) => n.networkId === networkId);
      return pools.length === 0 && networks.length === 0;
    },
    { what: `reconciliation to release ${subnet} and remove ${bridge}`, timeoutMs: 60_000, intervalMs: 1000 },
  );
  expect(weaveLinkDetails().filter((l) => l.name === bridge)).toEqual([]);
  expect(weaveRules(bridge)).toEqual([]);
  expect((await stack.netwire.status({})).networks.filter((n) => n.networkId === networkId)).toEqual([]);
  expect((await ipamLeases(stack.nc, subnet)).filter((l) => l.host === stack.host)).toEqual([]);
  // The subnet is free again.
  const reused = await scope.network(stack.plugin, ['--subnet', subnet]);
  await scope.removeNetwork(reused);
});

/**
 * What a user may see when a start or removal meets an outage: Docker naming the plugin it could
 * not reach, or our refusal naming the service or NATS that did not answer.
 */
const CLEAR_ERROR = /weave: .*(not running|did not answer|cannot reach|not reachable|unavailable|NATS|JetStream|gave up)|plugin.*(connection refused|no such file|EOF)|empty request/i;
