import { createInterface } from 'node:readline';
import { Sleeve } from '@weave/sleeve';

/**
 * One simulated host's sleeve, run by `ip netns exec <host ns> node … sleeve-host.ts '<config>'`.
 * The config (JSON) is validated by @weave/sleeve's own schema. Talks to the benchmark in lines:
 * prints {"ready":true} once the TAP is open and the threads run; answers a "stats" line with
 * {"stats":{…}} (counters as decimal strings); stops when stdin closes (the benchmark ended or
 * died) or on SIGTERM/SIGINT, and the TAP vanishes with the process.
 */
function main(): void {
  const sleeve = new Sleeve(JSON.parse(process.argv[2] ?? '{}'));
  sleeve.start();
  const say = (o: unknown) => process.stdout.write(JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    sleeve.stop();
    process.exit(0);
  };
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (l) => l.trim() === 'stats' && say({ stats: sleeve.stats() }));
  lines.on('close', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  say({ ready: true });
}

try {
  main();
} catch (e) {
  process.stderr.write(`sleeve-host: ${(e as Error).message}\n`);
  process.exit(1);
}
