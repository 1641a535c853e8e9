import { docker, dockerResult, pluginAnswers } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';
import { z } from 'zod';
import { median, percentile } from './stats';

/**
 * `npm run bench:attach`: how much longer `docker run --rm … true` takes on a weave network than
 * on Docker's own bridge. Runs are interleaved (weave, bridge, weave, …) so drift on the machine
 * hits both sides alike; prints medians and their ratio.
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
  await docker(['network', 'create', '-d', o.plugin, '--ipam-driver', o.plugin, net]);
  try {
    // One warm-up each: the first run pays for image layers and plugin activation.
    await timeRun(net, o.image);
    await timeRun('bridge', o.image);
    const weave: number[] = [];
    const bridge: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      weave.push(await timeRun(net, o.image));
      bridge.push(await timeRun('bridge', o.image));
    }
    const row = (name: string, xs: number[]) =>
      `${name.padEnd(14)} median ${median(xs).toFixed(0).padStart(5)} ms   p90 ${percentile(xs, 90).toFixed(0).padStart(5)} ms   min ${Math.min(...xs).toFixed(0).padStart(5)} ms`;
    console.log(`docker run --rm --net=<net> ${o.image} true, ${o.runs} runs each, interleaved`);
    console.log(row('--net=bridge', bridge));
    console.log(row(`--net=weave`, weave));
    console.log(`ratio weave/bridge (medians): ${(median(weave) / median(bridge)).toFixed(2)}x`);
  } finally {
    await dockerResult(['network', 'rm', net]);
  }
}

main().catch((e: Error) => {
  console.error(`bench:attach failed: ${e.message}`);
  process.exit(1);
});
