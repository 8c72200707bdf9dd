// When a part-full call should wait to fill. A vendor whose calls are the scarce resource (Marketo's
// 100 calls / 20 s, whatever each carries) should not spend its idle bucket on calls that a burst,
// or the call feeding this one, would have filled a moment later. A steady trickle, which would not
// fill a call in time, is never held, so an idle service still answers a lone change at once.

export interface FillPolicy {
  /** the longest a call is held to fill, from when it is next to go (per key, or for all) */
  maxHoldMs: number | ((key: string) => number);
  /** the span over which a key's arrival rate is measured */
  rateWindowMs: number;
  /**
   * records the calls feeding this one carry now (sent or waiting): each may join this key when its
   * answer comes back, e.g. a Marketo read's records become a write, a look-up's new persons a create
   */
  feeding?: (key: string) => number;
  now: () => number;
  /** runs `fn` after `ms`; returns a cancel */
  after: (ms: number, fn: () => void) => () => void;
}

export interface FillState {
  /** records waiting for the call */
  waiting: number;
  maxItems: number;
  /** how long the call has been next to go */
  nextForMs: number;
  /** records that joined over the rate window (0 when they came in one request: one is not a burst) */
  joinedInWindow: number;
  rateWindowMs: number;
  maxHoldMs: number;
  /** records in the calls feeding this key (see FillPolicy.feeding) */
  feeding: number;
}

/**
 * Whether a call should wait to fill: while its hold lasts, the records the feeding calls carry
 * could fill it, or at the rate records joined over the window the rest would come in time.
 */
export function holdsToFill(s: FillState): boolean {
  if (s.waiting >= s.maxItems) return false;
  const remainingMs = s.maxHoldMs - s.nextForMs;
  if (remainingMs <= 0) return false;
  if (s.waiting + s.feeding >= s.maxItems) return true;
  return s.waiting + (s.joinedInWindow / s.rateWindowMs) * remainingMs >= s.maxItems;
}

/** A key's recent joins, for its arrival rate. */
export class JoinWindow {
  private readonly joins: { at: number; count: number }[] = [];
  private total = 0;

  constructor(private readonly windowMs: number) {}

  add(at: number, count: number): void {
    this.joins.push({ at, count });
    this.total += count;
    this.trim(at);
  }

  /** records that joined within the last `spanMs` (at most the window) */
  countWithin(at: number, spanMs: number): number {
    this.trim(at);
    return this.joins.reduce((sum, j) => sum + (j.at > at - spanMs ? j.count : 0), 0);
  }

  /** the same, as evidence of a rate: 0 if they came in a single request */
  rateCount(at: number): number {
    this.trim(at);
    return this.joins.length > 1 ? this.total : 0;
  }

  private trim(at: number): void {
    while (this.joins.length > 0 && this.joins[0]!.at <= at - this.windowMs) this.total -= this.joins.shift()!.count;
  }
}
