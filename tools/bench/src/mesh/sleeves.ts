import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { Children, stopChild, tailOf } from './children';
import { inNs } from './exec';
import { comm, cpuSeconds, memory } from './proc';
import { sleeveDrops, type SleeveDrops } from './counters';
import { SLEEVE_PATHS, type Names, type SleevePath, underlayIp } from './topology';

const root = join(__dirname, '..', '..', '..', '..');
const script = join(__dirname, 'sleeve-host.ts');

const Line = z.union([z.object({ ready: z.literal(true) }), z.object({ stats: z.record(z.string(), z.union([z.string(), z.boolean()])) })]);
export type SleeveCounters = Record<string, string | boolean>;

/** One simulated host's sleeve process (the real @weave/sleeve addon in node, in the host netns). */
export class SleeveHost {
  readonly #waiters: ((line: z.infer<typeof Line>) => void)[] = [];

  /** Resident set size right after start: node, tsx and the addon before any traffic. */
  rssAtStart = 0;

  private constructor(
    readonly host: 1 | 2,
    readonly child: ChildProcess,
    readonly tap: string,
  ) {
    child.stdin!.on('error', () => {}); // EPIPE once the process is gone; its exit is what reports that
    createInterface({ input: child.stdout! }).on('line', (l) => {
      const parsed = Line.safeParse(safeJson(l));
      if (parsed.success) this.#waiters.shift()?.(parsed.data);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(children: Children, n: Names, host: 1 | 2, path: SleevePath = 'sleeve'): Promise<SleeveHost> {
    const peer = host === 1 ? 2 : 1;
    const { tap, port, password } = SLEEVE_PATHS[path];
    const config = {
      peerId: host,
      listenHost: underlayIp(host),
      listenPort: port,
      peers: [{ id: peer, address: `${underlayIp(peer)}:${port}` }],
      networks: [{ id: 1, tap }],
      ...(password ? { password } : {}),
    };
    const argv = inNs(n.host[host], [process.execPath, '--import', 'tsx', script, JSON.stringify(config)]);
    const child = children.spawn(argv, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    const stderr = tailOf(child.stderr);
    const s = new SleeveHost(host, child, tap);
    try {
      await s.#next(30_000, 'start');
    } catch (e) {
      await stopChild(child);
      throw new Error(`sleeve on host ${host}: ${(e as Error).message}${stderr() ? `: ${stderr().trim()}` : ''}`, { cause: e });
    }
    // `ip netns exec` execs the program in place, so the pid is node's; CPU and RSS are read from it.
    if (comm(s.pid) !== 'node') throw new Error(`sleeve on host ${host}: pid ${s.pid} is ${comm(s.pid)}, not node`);
    s.rssAtStart = memory(s.pid, 'VmRSS');
    return s;
  }

  async counters(): Promise<SleeveCounters> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      throw new Error(`sleeve on host ${this.host} exited (${this.child.signalCode ?? this.child.exitCode})`);
    }
    const reply = this.#next(5000, 'stats');
    this.child.stdin!.write('stats\n');
    const line = await reply;
    if (!('stats' in line)) throw new Error(`sleeve on host ${this.host}: unexpected answer`);
    return line.stats;
  }

  cpuSeconds = (): number => cpuSeconds(this.pid);
  peakRss = (): number => memory(this.pid, 'VmHWM');
  drops = (): SleeveDrops => sleeveDrops(this.pid, this.tap);

  #next(ms: number, what: string): Promise<z.infer<typeof Line>> {
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(t);
        this.child.off('exit', onExit);
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
      };
      const waiter = (line: z.infer<typeof Line>) => (settle(), resolve(line));
      const fail = (why: string) => (settle(), reject(new Error(`${what}: ${why}`)));
      const onExit = (code: number | null, signal: string | null) => fail(`exited (${signal ?? code})`);
      const t = setTimeout(() => fail(`no answer within ${ms / 1000} s`), ms);
      this.child.once('exit', onExit);
      this.#waiters.push(waiter);
    });
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
