/**
 * Polls `probe` until it returns something truthy, instead of sleeping a guessed time (tests, and
 * services waiting for their dependencies at start). The error names what was awaited and the
 * last failure, so a timeout in CI says what did not happen.
 */
export async function waitFor<T>(
  probe: () => Promise<T> | T,
  o: { what: string; timeoutMs?: number; intervalMs?: number },
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (o.timeoutMs ?? 15_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${o.timeoutMs ?? 15_000} ms waiting for ${o.what}${why}`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
  }
}
