import { FuzzStack, startFuzzStack } from '../src/fuzz-stack';
import { formatReport } from '../src/report';
import { failed, runCases } from '../src/run';

/**
 * The fuzz command's own code, on a smaller run with a fixed seed: hostile input to the plugin
 * socket and every subject the services listen on is refused in its caller's format, no service
 * dies, and no state changes. `npm run fuzz` runs 10,000 cases with a fresh seed.
 */
const SEED = 20_251_129;
const CASES = 1000;

let env: FuzzStack | undefined;
afterAll(() => env?.stop());

test(`${CASES} malformed requests and messages: 0 violations, 0 crashes, 0 state changes`, async () => {
  const log = () => undefined;
  env = await startFuzzStack(log);
  const report = await runCases(env, { cases: CASES, seed: SEED, concurrency: 32, stateEvery: 250, timeoutMs: 10_000, log });
  if (failed(report)) console.error(formatReport(report));
  expect({ violations: report.violations.length, crashes: report.crashes, stateChanges: report.stateChanges }).toEqual({ violations: 0, crashes: [], stateChanges: [] });
  expect(report.cases).toBe(CASES);
  expect(Object.values(report.targets).every((t) => t.cases > 0)).toBe(true);
});
