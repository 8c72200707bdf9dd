// Requests of one shape (one endpoint, the same parameters) wait for the rate limiter together, and
// a call takes its records only when the limiter admits it: every request that arrived while it
// waited rides along. Under load a vendor's fixed call budget then carries more records per call,
// and no record waits for two calls (as it would if calls were filled when queued). The one
// batching layer of both connectors: Marketo's reads and writes, Dataverse's In-filter reads and
// $batch writes. With a fill policy (call-fill.ts) a part-full call may wait for records that are
// about to come.

import type { WriteFence } from '../sync/ports.ts';
import { JoinWindow, holdsToFill, type FillPolicy } from './call-fill.ts';

export type { FillPolicy } from './call-fill.ts';

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
  /** a write's proof that its work still holds its leases, checked by `admit` right before each send */
  fence?: WriteFence | undefined;
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
   * and returns the records it carries. A call that carries fenced writes calls `admit` after `bind`
   * and again before every resend, and sends only the records it returns (those whose fences still
   * hold; the others are rejected with their fence's error): the result then lines up with them.
   * When `admit` returns none, the call must not be sent.
   */
  send: (key: string, bind: () => I[], admit: () => Promise<I[]>) => Promise<R>;
  /** hold part-full calls that are about to fill; default: a call goes as soon as it is dispatched */
  fill?: FillPolicy | undefined;
}

/**
 * A call built when admitted that had nothing left to send: `admit` answered no item (every rider's
 * fence had failed). The clients' `send` ends the call quietly on it.
 */
export class NothingToSend extends Error {}

/**
 * The records of a fenced write call, try by try: taken from the queue at the first try (`bind`),
 * then admitted (their fences checked) before every try, so a record whose work lost its lease
 * meanwhile leaves the call. Empty when every fence failed: the call must not be sent.
 */
export function admittedEachTry<I>(bind: () => unknown, admit: () => Promise<I[]>): () => Promise<I[]> {
  let bound = false;
  return () => {
    if (!bound) bind();
    bound = true;
    return admit();
  };
}

/** Why an aborted fence's write was dropped: the reason its work was aborted with. */
function fencedOut(fence: WriteFence | undefined): Error {
  const reason: unknown = fence?.signal.reason;
  return reason instanceof Error ? reason : new Error('the write was fenced out');
}

/** how long records a call answered are remembered for `carrying` */
const ANSWERED_MEMORY_MS = 5_000;

export function createRideAlong<I, R>(options: RideAlongOptions<I, R>) {
  const waiting = new Map<string, Rider<I, R>[]>();
  const queued = new Set<string>();
  const weigh = options.weigh;
  const fill = options.fill;
  const now = fill?.now ?? (() => 0);
  // records waiting or in calls not answered yet, per key; and those answered a moment ago
  const carried = new Map<string, number>();
  const answered = new Map<string, JoinWindow>();
  // the fill policy's view: recent joins per key, and the keys whose call is held (with the cancel of their next look)
  const joins = new Map<string, JoinWindow>();
  const held = new Map<string, () => void>();
  // when the next call of a key was first looked at: a hold counts from then, not from when its
  // records joined, so those left over from a full call (they waited for its turn) do not go at
  // once in a part-full call of their own
  const nextCallSince = new Map<string, number>();

  function carry(key: string, delta: number): void {
    const n = (carried.get(key) ?? 0) + delta;
    if (n > 0) carried.set(key, n);
    else carried.delete(key);
  }

  function waitingCount(key: string): number {
    return (waiting.get(key) ?? []).reduce((sum, r) => sum + r.items.length, 0);
  }

  /** true when the call for `key` waits to fill (it looks again on a timer and when records join) */
  function hold(key: string): boolean {
    const riders = waiting.get(key);
    if (!fill || !riders || riders.length === 0) return false;
    const at = now();
    const since = nextCallSince.get(key) ?? nextCallSince.set(key, at).get(key)!;
    const maxHoldMs = typeof fill.maxHoldMs === 'number' ? fill.maxHoldMs : fill.maxHoldMs(key);
    const nextForMs = at - since;
    const holding = holdsToFill({
      waiting: waitingCount(key),
      maxItems: options.maxItems,
      nextForMs,
      joinedInWindow: joins.get(key)?.rateCount(at) ?? 0,
      rateWindowMs: fill.rateWindowMs,
      maxHoldMs,
      feeding: fill.feeding?.(key) ?? 0,
    });
    if (!holding) return false;
    // the rate falls as the window moves past a burst's end, and a feeding call's answer may come
    const lookInMs = Math.max(1, Math.min(maxHoldMs - nextForMs, fill.rateWindowMs / 10));
    held.set(key, fill.after(lookInMs, () => release(key)));
    return true;
  }

  function release(key: string): void {
    held.get(key)?.();
    held.delete(key);
    dispatch(key);
  }

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

  /** Adds one request's riders to the next call for `key`, and starts that call. */
  function join(key: string, request: readonly Omit<Rider<I, R>, 'weight'>[]): void {
    const riders = waiting.get(key) ?? [];
    let count = 0;
    for (const r of request) {
      const rider = { ...r, weight: weigh ? r.items.reduce((sum, item) => sum + weigh(item), 0) : r.items.length };
      riders.push(rider);
      count += rider.items.length;
      // work that lost its lease while its write waits for a call leaves the queue at once
      rider.fence?.signal.addEventListener('abort', () => leave(key, rider), { once: true });
    }
    waiting.set(key, riders);
    carry(key, count);
    if (fill) (joins.get(key) ?? joins.set(key, new JoinWindow(fill.rateWindowMs)).get(key)!).add(now(), count);
    // a held call goes as soon as it is full
    if (held.has(key)) {
      if (waitingCount(key) >= options.maxItems) release(key);
    } else if (!queued.has(key)) {
      queued.add(key);
      // after this turn's promise jobs (work one answer resumed joins together); the call takes
      // its records only when admitted, so later requests still join
      setImmediate(() => dispatch(key));
    }
  }

  /** A waiting rider whose fence was aborted: out of the queue, rejected with the fence's reason. */
  function leave(key: string, rider: Rider<I, R>): void {
    const riders = waiting.get(key);
    const at = riders?.indexOf(rider) ?? -1;
    if (!riders || at < 0) return;
    riders.splice(at, 1);
    if (riders.length === 0) waiting.delete(key);
    carry(key, -rider.items.length);
    rider.reject(fencedOut(rider.fence));
  }

  function dispatch(key: string): void {
    if (hold(key)) return;
    let taken: Rider<I, R>[] | undefined;
    // the riders still in the call: fences that fail take theirs out before a send
    let live: Rider<I, R>[] = [];
    const admit = async (): Promise<I[]> => {
      const refusals = await Promise.all(
        live.map((rider): Promise<{ error: unknown } | undefined> => rider.fence?.verify().then(() => undefined, (error: unknown) => ({ error })) ?? Promise.resolve(undefined)),
      );
      const kept: Rider<I, R>[] = [];
      live.forEach((rider, i) => {
        const refused = refusals[i];
        if (!refused) return kept.push(rider);
        carry(key, -rider.items.length);
        rider.reject(refused.error);
      });
      live = kept;
      return live.flatMap((r) => r.items);
    };
    const bind = () => {
      nextCallSince.delete(key);
      taken = take(key);
      live = taken;
      for (const rider of taken) rider.onSent?.();
      // the rest waits for the next call, which starts queuing now
      if (waiting.has(key)) queueMicrotask(() => dispatch(key));
      else queued.delete(key);
      return taken.flatMap((r) => r.items);
    };
    const settled = () => {
      const count = live.reduce((sum, r) => sum + r.items.length, 0);
      carry(key, -count);
      if (fill && count > 0) (answered.get(key) ?? answered.set(key, new JoinWindow(ANSWERED_MEMORY_MS)).get(key)!).add(now(), count);
    };
    options.send(key, bind, admit).then(
      (result) => {
        settled();
        let offset = 0;
        for (const rider of live) {
          rider.resolve({ result, offset });
          offset += rider.items.length;
        }
      },
      (error: unknown) => {
        settled();
        if (taken) {
          for (const rider of live) rider.reject(error);
          return;
        }
        // refused before admission (quota, shutdown): it applies to everyone still waiting
        const riders = waiting.get(key) ?? [];
        waiting.delete(key);
        queued.delete(key);
        nextCallSince.delete(key);
        carry(key, -riders.reduce((sum, r) => sum + r.items.length, 0));
        for (const rider of riders) rider.reject(error);
      },
    );
  }

  return {
    /**
     * Joins the next call for `key`; at most `maxItems` records per request. `onSent` is told when
     * the limiter admits the call that carries them (the work that may now start beside it).
     */
    ride(key: string, items: readonly I[], onSent?: () => void, fence?: WriteFence): Promise<Ride<R>> {
      if (items.length > options.maxItems) return Promise.reject(new RangeError(`at most ${options.maxItems} records per request`));
      if (fence?.signal.aborted) return Promise.reject(fencedOut(fence));
      return new Promise<Ride<R>>((resolve, reject) => join(key, [{ items, onSent, fence, resolve, reject }]));
    },
    /**
     * Joins with a request whose records may go in different calls (a read: each record's answer
     * stands alone), in pieces of `pieceSize`: a call takes whole pieces, so it fills to within a
     * piece of its capacity where whole requests would leave it short. It counts as one request
     * (the fill policy's rate); `onSent` is told once every piece is sent. Resolves with the answers
     * of the calls that carried it.
     */
    rideInPieces(key: string, items: readonly I[], pieceSize: number, onSent?: () => void): Promise<R[]> {
      if (items.length === 0) {
        onSent?.();
        return Promise.resolve([]);
      }
      const pieces: (readonly I[])[] = [];
      for (let i = 0; i < items.length; i += pieceSize) pieces.push(items.slice(i, i + pieceSize));
      let unsent = pieces.length;
      const sent = onSent && (() => --unsent === 0 && onSent());
      const riders: Omit<Rider<I, R>, 'weight'>[] = [];
      const rides = pieces.map((piece) => new Promise<Ride<R>>((resolve, reject) => riders.push({ items: piece, onSent: sent, resolve, reject })));
      join(key, riders);
      return Promise.all(rides).then((done) => [...new Set(done.map((ride) => ride.result))]);
    },
    /**
     * Records of the keys `which` accepts that are waiting, in calls not answered yet, or answered
     * within the last `answeredWithinMs` (default 250): the work that may soon reach the stage this
     * one feeds, once its callers have done what comes between.
     */
    carrying(which: (key: string) => boolean = () => true, answeredWithinMs = 250): number {
      const at = now();
      let n = 0;
      for (const [key, count] of carried) if (which(key)) n += count;
      for (const [key, window] of answered) if (which(key)) n += window.countWithin(at, Math.min(answeredWithinMs, ANSWERED_MEMORY_MS));
      return n;
    },
  };
}
