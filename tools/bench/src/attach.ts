import { docker, dockerResult, pluginAnswers } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { z } from 'zod';
import { median, percentile } from './stats';

/**
 * `npm run bench:attach`: how much longer `docker run --rm … true` takes on a weave network than
 * on Docker's own bridge. Runs are interleaved (weave, bridge, user bridge, weave, …) so drift on
 * the machine hits every side alike; prints medians and their ratios.
 *
 * Two baselines: the default `bridge` network, and a user-defined bridge network. Docker gives
 * every user-defined network (weave's included) its embedded DNS resolver, set up inside each
 * container's namespace, which the default bridge skips; the second ratio compares like with like.
 */
const Opts = z.object({
  runs: z.coerce.number().int().min(3).max(500).default(20),
  plugin: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/).default('weave'),
  image: z.string().default('weave-bbox:local'),
});

async function timeRun(net: string, image: string): Promise<number> {
  const t0 = performance.now();
  await docker(['run', '--rm', `--net=${net}`, image, 'true']);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
  const o = Opts.parse(args);
  const socket = `/run/docker/plugins/${o.plugin}.sock`;
  await waitFor(() => pluginAnswers(socket), { what: `plugin ${o.plugin} (npm start brings it up)`, timeoutMs: 60_000 });
  const net = `weave:bench-${process.pid}`;
  const userBridge = `bench-bridge-${process.pid}`;
  await docker(['network', 'create', '-d', o.plugin, '--ipam-driver', o.plugin, net]);
  await docker(['network', 'create', '-d', 'bridge', userBridge]);
  try {
    const cases = { '--net=bridge': 'bridge', '--net=<user bridge>': userBridge, '--net=weave': net };
    const times = Object.fromEntries(Object.keys(cases).map((k) => [k, [] as number[]]));
    // One warm-up each: the first run pays for image layers and plugin activation.
    for (const n of Object.values(cases)) await timeRun(n, o.image);
    for (let i = 0; i < o.runs; i++) for (const [k, n] of Object.entries(cases)) times[k]!.push(await timeRun(n, o.image));
    const row = (name: string, xs: number[]) =>
      `${name.padEnd(20)} median ${median(xs).toFixed(0).padStart(5)} ms   p90 ${percentile(xs, 90).toFixed(0).padStart(5)} ms   min ${Math.min(...xs).toFixed(0).padStart(5)} ms`;
    console.log(`docker run --rm --net=<net> ${o.image} true, ${o.runs} runs each, interleaved`);
    for (const [k, xs] of Object.entries(times)) console.log(row(k, xs));
    const weave = median(times['--net=weave']!);
    console.log(`ratio weave/bridge (medians):             ${(weave / median(times['--net=bridge']!)).toFixed(2)}x`);
    console.log(`ratio weave/user-defined bridge (medians): ${(weave / median(times['--net=<user bridge>']!)).toFixed(2)}x`);
  } finally {
    await dockerResult(['network', 'rm', net]);
    await dockerResult(['network', 'rm', userBridge]);
  }
}

main().catch((e: Error) => {
  console.error(`bench:attach failed: ${e.message}`);
  process.exit(1);
});
