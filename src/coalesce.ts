// Adaptive batching for rate-limited APIs: requests that arrive while earlier calls are in flight
// (or waiting for the rate limiter) are gathered into the next call. An idle system calls at
// once with one record; a busy one sends fuller batches, so a fixed call budget (Marketo's
// 100 calls / 20 s) carries more changes exactly when there are more changes to carry.

export interface CoalescerOptions {
  /** records per call (Marketo and our Dataverse reads: 300 / 100) */
  maxBatch: number;
  /** calls of this kind in flight at once */
  maxInFlight: number;
}

export function createCoalescer<K, V>(run: (keys: K[]) => Promise<Map<K, V>>, options: CoalescerOptions) {
  const pending = new Map<K, { resolve: (value: V | undefined) => void; reject: (error: unknown) => void }[]>();
  let inFlight = 0;

  function pump(): void {
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
        // Scheduled, not immediate: requests made in the same tick share the first call.
        queueMicrotask(pump);
      });
    },
  };
}
