import { CoalescedPasses } from '../src';

/** A pass whose end the test controls. */
function gatedPasses() {
  const gates: Array<() => void> = [];
  let started = 0;
  const errors: unknown[] = [];
  const passes = new CoalescedPasses(
    () =>
      new Promise<void>((resolve, reject) => {
        started++;
        gates.push(() => (started === 2 ? reject(new Error('second pass failed')) : resolve()));
      }),
    (e) => errors.push(e),
  );
  return { passes, gates, errors, started: () => started };
}

test('requests during a pass coalesce into exactly one more pass, and a failed pass does not stop the next', async () => {
  const g = gatedPasses();
  const first = g.passes.request();
  expect(g.started()).toBe(1);
  const a = g.passes.request();
  const b = g.passes.request();
  expect(g.started()).toBe(1); // never two at once
  g.gates.shift()!();
  await new Promise((r) => setImmediate(r));
  expect(g.started()).toBe(2); // one more for both requests
  g.gates.shift()!();
  await Promise.all([first, a, b]);
  expect(g.started()).toBe(2);
  expect(g.errors.map((e) => (e as Error).message)).toEqual(['second pass failed']);

  const later = g.passes.request();
  expect(g.started()).toBe(3);
  g.gates.shift()!();
  await later;
});
