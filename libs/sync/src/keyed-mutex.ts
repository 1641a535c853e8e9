/**
 * Serialises operations per key. Docker calls concurrently (several containers start at once),
 * and two changes to one network's bridge must not interleave, so operations on one key run one
 * at a time while different keys run in parallel. `exclusive` waits for everything in flight
 * and holds off everything new: reconcile must not mistake a half-created network for a leftover.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();
  private gate: Promise<unknown> = Promise.resolve();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = [this.tails.get(key), this.gate];
    const mine = settled(before).then(fn);
    const tail = mine.catch(noop);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return mine;
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const mine = settled([...this.tails.values(), this.gate]).then(fn);
    this.gate = mine.catch(noop);
    return mine;
  }
}

const noop = (): void => {};
const settled = (ps: Array<Promise<unknown> | undefined>): Promise<unknown> => Promise.all(ps.map((p) => p?.catch(noop)));
