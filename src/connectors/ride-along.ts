// Requests of one shape (one endpoint, the same parameters) wait for the rate limiter together, and
// a call takes its records only when the limiter admits it: every request that arrived while it
// waited rides along. Under load a vendor's fixed call budget then carries more records per call,
// and no record waits for two calls (as it would if calls were filled when queued). The one
// batching layer of both connectors: Marketo's reads and writes, Dataverse's In-filter reads and
// $batch writes.

export interface Ride<R> {
  /** what the whole call returned */
  result: R;
  /** where this request's records start among the call's records */
  offset: number;
}

interface Rider<I, R> {
  items: readonly I[];
  /** its records' share of a call's capacity, weighed once when it joins */
  weight: number;
  /** told when the call carrying these records is admitted and about to be sent */
  onSent: (() => void) | undefined;
  resolve: (ride: Ride<R>) => void;
  reject: (error: unknown) => void;
}

export interface RideAlongOptions<I, R> {
  /** records one call may carry (Marketo: 300, a Dataverse $batch: 1000); one request never carries more */
  maxItems: number;
  /**
   * what one call for `key` may carry now, in `weigh` units, asked when the call is filled with
   * the weight waiting for it: a batch size that adapts (to the backlog too), or the room left in a
   * URL. Default `maxItems`. A call always takes at least the first request waiting.
   */
  capacity?: (key: string, waiting: number) => number;
  /** the share of `capacity` one record takes; default 1 */
  weigh?: (item: I) => number;
  /**
   * Makes one call for `key`; `bind` must be called when the limiter admits the call (not before)
   * and returns the records it carries.
   */
  send: (key: string, bind: () => I[]) => Promise<R>;
}

export function createRideAlong<I, R>(options: RideAlongOptions<I, R>) {
  const waiting = new Map<string, Rider<I, R>[]>();
  const queued = new Set<string>();
  const weigh = options.weigh;

  function take(key: string): Rider<I, R>[] {
    const riders = waiting.get(key) ?? [];
    // in `weigh` units (URL characters for an In-filter read), not records: maxItems bounds the count below
    const capacity = options.capacity?.(key, riders.reduce((sum, r) => sum + r.weight, 0)) ?? options.maxItems;
    let count = 0;
    let weight = 0;
    let n = 0;
    while (n < riders.length) {
      const rider = riders[n]!;
      if (n > 0 && (count + rider.items.length > options.maxItems || weight + rider.weight > capacity)) break;
      count += rider.items.length;
      weight += rider.weight;
      n += 1;
    }
    const taken = riders.splice(0, n);
    if (riders.length === 0) waiting.delete(key);
    return taken;
  }

  function dispatch(key: string): void {
    let taken: Rider<I, R>[] | undefined;
    const bind = () => {
      taken = take(key);
      for (const rider of taken) rider.onSent?.();
      // the rest waits for the next call, which starts queuing now
      if (waiting.has(key)) queueMicrotask(() => dispatch(key));
      else queued.delete(key);
      return taken.flatMap((r) => r.items);
    };
    options.send(key, bind).then(
      (result) => {
        let offset = 0;
        for (const rider of taken ?? []) {
          rider.resolve({ result, offset });
          offset += rider.items.length;
        }
      },
      (error: unknown) => {
        if (taken) {
          for (const rider of taken) rider.reject(error);
          return;
        }
        // refused before admission (quota, shutdown): it applies to everyone still waiting
        const riders = waiting.get(key) ?? [];
        waiting.delete(key);
        queued.delete(key);
        for (const rider of riders) rider.reject(error);
      },
    );
  }

  return {
    /**
     * Joins the next call for `key`; at most `maxItems` records per request. `onSent` is told when
     * the limiter admits the call that carries them (the work that may now start beside it).
     */
    ride(key: string, items: readonly I[], onSent?: () => void): Promise<Ride<R>> {
      if (items.length > options.maxItems) return Promise.reject(new RangeError(`at most ${options.maxItems} records per request`));
      return new Promise<Ride<R>>((resolve, reject) => {
        const riders = waiting.get(key) ?? [];
        const weight = weigh ? items.reduce((sum, item) => sum + weigh(item), 0) : items.length;
        riders.push({ items, weight, onSent, resolve, reject });
        waiting.set(key, riders);
        if (!queued.has(key)) {
          queued.add(key);
          // after this turn's promise jobs (work one answer resumed joins together); the call takes
          // its records only when admitted, so later requests still join
          setImmediate(() => dispatch(key));
        }
      });
    },
  };
}
