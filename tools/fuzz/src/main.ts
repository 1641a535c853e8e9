import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { startFuzzStack } from './fuzz-stack';
import { formatReport } from './report';
import { failed, runCases } from './run';

/**
 * `npm run fuzz [-- --cases=10000 --seed=N --concurrency=32 --only=i,j]`: hostile input to a real
 * stack (see run.ts); prints the figures and exits non-zero on any violation, crash or change.
 */
const Options = z
  .object({
    cases: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
    seed: z.coerce.number().int().min(0).max(0xffff_ffff).default(() => randomInt(0xffff_ffff)),
    concurrency: z.coerce.number().int().min(1).max(256).default(32),
    'state-every': z.coerce.number().int().min(1).default(1000),
    'timeout-ms': z.coerce.number().int().min(100).max(120_000).default(10_000),
    only: z
      .string()
      .regex(/^\d+(,\d+)*$/, 'a comma-separated list of case numbers')
      .transform((s) => s.split(',').map(Number))
      .optional(),
  })
  .strict();

const log = (msg: string) => process.stderr.write(`[fuzz] ${msg}\n`);

function parseArgs(argv: readonly string[]): z.output<typeof Options> {
  const entries = argv.map((a) => {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`unexpected argument ${a} (options look like --cases=1000)`);
    return [m[1]!, m[2]!] as const;
  });
  const r = Options.safeParse(Object.fromEntries(entries));
  if (!r.success) throw new Error(z.prettifyError(r.error));
  return r.data;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  log(`seed ${o.seed} (replay with --seed=${o.seed}); starting nats-server, ipam, netwire, plugin-api and router`);
  const env = await startFuzzStack(log);
  const stop = () => void env.stop().finally(() => process.exit(130));
  process.once('SIGINT', stop).once('SIGTERM', stop);
  try {
    const report = await runCases(env, { cases: o.cases, seed: o.seed, concurrency: o.concurrency, stateEvery: o['state-every'], timeoutMs: o['timeout-ms'], only: o.only, log });
    process.stdout.write(`${formatReport(report)}\n`);
    return failed(report) ? 1 : 0;
  } finally {
    await env.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    log(`failed: ${e.message}`);
    process.exit(2);
  },
);
