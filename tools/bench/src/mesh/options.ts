import { z } from 'zod';
import { TEST_NAMES, type TestName } from './iperf';
import { PATHS, type PathName } from './topology';

/** A comma-separated list of distinct names out of `all`, in the order given. */
const list = <T extends string>(all: readonly T[]) =>
  z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(z.enum(all as [T, ...T[]])).min(1))
    .refine((xs) => new Set(xs).size === xs.length, 'names must not repeat');

const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

export const MeshOptions = z
  .object({
    seconds: z.coerce.number().int().min(1).max(600).default(5),
    paths: list<PathName>(PATHS).default([...PATHS]),
    tests: list<TestName>(TEST_NAMES).default([...TEST_NAMES]),
    rounds: z.coerce.number().int().min(1).max(20).default(1),
    json: flag.default(false),
  })
  .strict();
export type MeshOptions = z.output<typeof MeshOptions>;

export class UsageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UsageError';
  }
}

/** `--name=value` and bare `--flag` (= true) arguments, validated. */
export function parseOptions(argv: readonly string[]): MeshOptions {
  const entries = argv.map((a) => {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new UsageError(`unexpected argument ${a} (options look like --seconds=5)`);
    return [m[1]!, m[2] ?? 'true'] as const;
  });
  const r = MeshOptions.safeParse(Object.fromEntries(entries));
  if (!r.success) throw new UsageError(z.prettifyError(r.error), { cause: r.error });
  return r.data;
}
