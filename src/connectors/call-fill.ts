// When a part-full call should wait to fill. A vendor whose calls are the scarce resource (Marketo's
// 100 calls / 20 s, whatever each carries) should not spend its idle bucket on calls that a burst,
// or the call feeding this one, would have filled a moment later. A steady trickle, which would not
// fill a call in time, is never held, so an idle service still answers a lone change at once.

export interface FillPolicy {
  /**
   * the longest a call is held to fill, from when it is next to go (per key, or for all); a call
   * that a backlog in its feeding calls would fill may wait FED_HOLD_FACTOR times as long
   */
  maxHoldMs: number | ((key: string) => number);
  /** the span over which a key's arrival rate is measured */
  rateWindowMs: number;
  /**
   * records the calls feeding this one carry now (sent or waiting): each may join this key when its
   * answer comes back, e.g. a Marketo read's records become a write, a look-up's new persons a create
   */
  feeding?: (key: string) => number;
  /** of those, the records not answered yet (waiting or sent): a whole call's worth is a backlog */
  backlog?: (key: string) => number;
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
  /**
   * the time those records joined over: the window, or less when they began after a quiet spell
   * (a burst's first moments); default the window
   */
  rateSpanMs?: number;
  maxHoldMs: number;
  /** records in the calls feeding this key (see FillPolicy.feeding) */
  feeding: number;
  /** of those, the records not answered yet (see FillPolicy.backlog); default 0 */
  backlog?: number;
}

/**
 * Records the feeding calls already carry are sure to come; only the work between (a Dataverse read
 * and the merge, after a Marketo read) delays them, and most when the service is busiest. When those
 * calls have a whole call's worth still unanswered (a backlog), a call they fill may wait this many
 * holds: sent a moment early it would go part-full beside the full one that follows, and under a
 * backlog every such call costs the budget a drip. A steady load's feeding calls hold less (at 100
 * changes/s a read carries ~80), and its calls keep the one hold.
 */
export const FED_HOLD_FACTOR = 2;

/**
 * How much longer a call should wait to fill (0: it goes now): while its hold lasts, the records the
 * feeding calls carry could fill it, or at the rate records joined over the window the rest would
 * come in time.
 */
export function fillWaitMs(s: FillState): number {
  if (s.waiting >= s.maxItems) return 0;
  if (s.waiting + s.feeding >= s.maxItems) return Math.max(0, s.maxHoldMs * ((s.backlog ?? 0) >= s.maxItems ? FED_HOLD_FACTOR : 1) - s.nextForMs);
  const remainingMs = s.maxHoldMs - s.nextForMs;
  if (remainingMs <= 0) return 0;
  return s.waiting + (s.joinedInWindow / (s.rateSpanMs ?? s.rateWindowMs)) * remainingMs >= s.maxItems ? remainingMs : 0;
}

/** Whether a call should wait to fill (see fillWaitMs). */
export function holdsToFill(s: FillState): boolean {
  return fillWaitMs(s) > 0;
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

  /**
   * The time `rateCount`'s records joined over: from the first of them, as a burst that began after a
   * quiet spell has come at its rate only for that long, but at least a quarter of the window, so two
   * requests a moment apart are not taken for a flood.
   */
  rateSpan(at: number): number {
    this.trim(at);
    const first = this.joins[0];
    return first ? Math.min(this.windowMs, Math.max(this.windowMs / 4, at - first.at)) : this.windowMs;
  }

  private trim(at: number): void {
    while (this.joins.length > 0 && this.joins[0]!.at <= at - this.windowMs) this.total -= this.joins.shift()!.count;
  }
}
