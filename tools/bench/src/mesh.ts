import { bench, type Bench } from './mesh/bench';
import { Children } from './mesh/children';
import { parseOptions, UsageError } from './mesh/options';
import { formatResults } from './mesh/report';
import { names, Undo } from './mesh/topology';

/**
 * `npm run bench:mesh`: container-to-container throughput between two simulated hosts over the
 * sleeve (the real @weave/sleeve addon), kernel VXLAN, and a plain veth, side by side in one run.
 * Builds its own namespaces (see mesh/topology.ts), runs iperf3 (TCP 1 and 4 streams, UDP with
 * 64-byte payloads) on each path in turn, interleaved per test so that drift on the machine hits
 * every path alike, and prints the table and the ratios (the table on stdout, progress on stderr).
 * Everything it made is removed at the end, on failure and on Ctrl-C; a crashed run's leftovers
 * are removed by the next run.
 */
const log = (msg: string) => process.stderr.write(`[bench:mesh] ${msg}\n`);

class Aborted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted (${signal})`);
    this.name = 'Aborted';
  }
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const b: Bench = { o, n: names(process.pid), children: new Children(), sleeves: {}, abort: new AbortController() };
  const undo = new Undo();
  const cleanup = async () => {
    await b.children.stopAll();
    await undo.runAll(log);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (!b.abort.signal.aborted) {
        log(`${sig}: stopping and cleaning up`);
        b.abort.abort(new Aborted(sig));
        void b.children.stopAll();
      } else void cleanup().finally(() => process.exit(130)); // a second signal: do not wait for the run to unwind
    });
  }
  try {
    const results = await bench(b, undo, log);
    process.stdout.write(o.json ? JSON.stringify(results, null, 2) + '\n' : formatResults(results) + '\n');
    return results.failures.length ? 1 : 0;
  } catch (e) {
    // Once interrupted, whatever failed next (a killed child) is a consequence, not the story.
    throw b.abort.signal.aborted ? b.abort.signal.reason : e;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    if (e instanceof Aborted) process.exit(e.signal === 'SIGINT' ? 130 : 143);
    console.error(`bench:mesh failed: ${e instanceof UsageError ? `bad options:\n${e.message}` : e.message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
