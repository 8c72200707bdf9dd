// Adaptive batching for calls that cost per call (a Marketo look-up, a database statement): requests
// that arrive while earlier calls are in flight are gathered into the next call. An idle system
// calls at once with one record; a busy one sends fuller batches, so a fixed budget (Marketo's
// calls, the database's connections) carries more work exactly when there is more to carry.

export interface CoalescerOptions {
  /** records per call (Marketo and our Dataverse reads: 300 / 100) */
  maxBatch: number;
  /** calls of this kind in flight at once */
  maxInFlight: number;
}

export function createCoalescer<K, V>(run: (keys: K[]) => Promise<Map<K, V>>, options: CoalescerOptions) {
  const pending = new Map<K, { resolve: (value: V | undefined) => void; reject: (error: unknown) => void }[]>();
  let inFlight = 0;
  let scheduled = false;

  function pump(): void {
    scheduled = false;
    while (inFlight < options.maxInFlight && pending.size > 0) {
      const keys = [...pending.keys()].slice(0, options.maxBatch);
      const waiters = keys.map((key) => {
        const list = pending.get(key)!;
        pending.delete(key);
        return list;
      });
      inFlight++;
      run(keys).then(
        (results) => keys.forEach((key, i) => waiters[i]!.forEach((w) => w.resolve(results.get(key)))),
        (error: unknown) => waiters.forEach((list) => list.forEach((w) => w.reject(error))),
      ).finally(() => {
        inFlight--;
        pump();
      });
    }
  }

  return {
    load(key: K): Promise<V | undefined> {
      return new Promise<V | undefined>((resolve, reject) => {
        const list = pending.get(key) ?? [];
        list.push({ resolve, reject });
        pending.set(key, list);
        // Scheduled after this turn's promise jobs, not at the next one: work resumed by one answer
        // (the items a vendor call carried) reaches here at different await depths, and all of it
        // shares the first call instead of the first item going out alone.
        if (!scheduled) {
          scheduled = true;
          setImmediate(pump);
        }
      });
    },
  };
}

/** A key's own error, told apart from any value (the class is private to this module). */
class Failure {
  constructor(readonly error: unknown) {}
}

/**
 * A coalescer whose shared call, should it fail, is made again one key at a time: only the keys
 * that fail on their own fail (one body the database refuses, one link made meanwhile), and each
 * waiter gets its own result or its own error.
 */
export function createSplittingCoalescer<K, V>(
  all: (keys: K[]) => Promise<Map<K, V>>,
  one: (key: K) => Promise<V>,
  options: CoalescerOptions & {
    /** make the keys one after another, in the order they came (the inbox stamps arrival order); default all at once */
    inOrder?: boolean;
  },
) {
  const coalescer = createCoalescer<K, V | Failure>(async (keys) => {
    try {
      return await all(keys);
    } catch {
      const alone = (key: K) => one(key).catch((error: unknown) => new Failure(error));
      if (!options.inOrder) return new Map(await Promise.all(keys.map(async (key) => [key, await alone(key)] as const)));
      const results = new Map<K, V | Failure>();
      for (const key of keys) results.set(key, await alone(key));
      return results;
    }
  }, options);
  return {
    async load(key: K): Promise<V | undefined> {
      const result = await coalescer.load(key);
      if (result instanceof Failure) throw result.error;
      return result;
    },
  };
}
