/**
 * A pass that must never run twice at once, asked for by many events: `request()` starts one now,
 * or, while one runs, one more after it (however many ask meanwhile), since a pass that started
 * before a change may have missed it. Resolves when the pass that covers the request is done.
 * `pass` reports its own failures: one that throws only ends that pass.
 */
export class CoalescedPasses {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Resolves once no pass is running (at once when none is). */
  async idle(): Promise<void> {
    await this.running;
  }

  request(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.pass().catch(this.onError);
      } while (this.again);
    })().finally(() => (this.running = null));
    return this.running;
  }
}
