import type { BudgetSpec, DayHolding, Holding, WindowHolding, WindowPool } from './allocation.ts';

// The one local admission of vendor calls, used by both clients: it spends the slice of the
// deployment's budget this member holds (allocation.ts), per pool:
// - window pools are token buckets: tokens are EARNED at the held rate up to the held burst, never
//   handed out, so a burst granted a moment ago cannot be spent before it was earned (the safety
//   argument in docs/budgets.md needs exactly that); the rate is spread over the window plus the
//   network's jitter, so calls that arrive at the vendor a little late still fit its window;
// - the slots pool bounds the calls in flight (lowered further by `capConcurrency`, the Dataverse
//   restart after a 429);
// - the day pool is an allowance: calls granted for the day less calls made.
// Calls wait in priority order (lower first), first come first served within one priority. A
// slice is valid until a local monotonic deadline that ends before the member's lease does on the
// database's clock: a member that froze and woke after it spends nothing until its next beat.

export class BudgetExhausted extends Error {
  constructor(readonly pool: string) {
    super(`the deployment's ${pool} budget is spent`);
    this.name = 'BudgetExhausted';
  }
}

export type Slice = {
  holdings: Record<string, Holding>;
  /** local ms (the limiter's clock) until which the slice may be spent */
  validUntil: number;
  /** day pools whose deployment-wide quota is spent for the day (calls are refused, not queued) */
  exhausted?: readonly string[];
};

export type JobOptions = {
  /** lower goes first */
  priority: number;
  /** tokens of each `perCall` pool that must be in the bucket (a read may ask for one to spare); default 1 */
  need?: number;
};

export type LimiterOptions = {
  spec: BudgetSpec;
  /** window pools charged one token per call (others are charged afterwards with `charge`) */
  perCall: readonly string[];
  /** local monotonic ms */
  now: () => number;
  /** runs `fn` after `ms`; returns a cancel */
  after: (ms: number, fn: () => void) => () => void;
  /** told when calls wait for something only a new slice can give (no share, no rate, lease ran out) */
  onStarved?: () => void;
  /** the first slice; without it the limiter holds nothing until `setSlice` */
  slice?: Slice;
  /** start with full buckets (a budget no one else ever shared; tests and stand-alone clients) */
  startFull?: boolean;
};

type Job = { priority: number; seq: number; need: number; queuedAt: number; run: () => void; reject: (error: unknown) => void };

/** Calls held back, or let go and not ended, for longer than a bound: what is holding them (`overdue`). */
export type OverdueCalls = {
  waiting: number;
  inFlight: number;
  slots: number;
  oldestWaitingMs: number | null;
  oldestInFlightMs: number | null;
  /** why the first waiting call is not admitted: starved (no slice), a wait, or (empty) every slot busy */
  blocked: { waitMs?: number; starved?: boolean; exhausted?: string } | null;
};

const windowSpan = (pool: WindowPool) => pool.windowMs + pool.jitterMs;

export function createLimiter(options: LimiterOptions) {
  const { spec, now } = options;
  const windows = Object.entries(spec.pools).filter((e): e is [string, WindowPool] => e[1].kind === 'window');
  const slotPool = Object.entries(spec.pools).find(([, p]) => p.kind === 'slots')?.[0];
  const dayPool = Object.entries(spec.pools).find(([, p]) => p.kind === 'day')?.[0];
  let slice: Slice = options.slice ?? { holdings: {}, validUntil: Number.NEGATIVE_INFINITY };
  const tokens = new Map<string, number>();
  let refilledAt = now();
  for (const [name] of windows) tokens.set(name, options.startFull ? ((slice.holdings[name] as WindowHolding | undefined)?.burst ?? 0) : 0);
  let inFlight = 0;
  /** when each call in flight was admitted, by its job's seq */
  const admittedAt = new Map<number, number>();
  let concurrencyCap = Number.POSITIVE_INFINITY;
  let pausedUntil = Number.NEGATIVE_INFINITY;
  let dayUsed = 0;
  let day = (slice.holdings[dayPool ?? ''] as DayHolding | undefined)?.day;
  const queue: Job[] = [];
  let seq = 0;
  let timer: (() => void) | undefined;
  let stopped: Error | undefined;
  // admitted calls per window pool with their times, for the demand this member reports
  const recent: number[] = [];

  const window = (name: string): WindowHolding => (slice.holdings[name] as WindowHolding | undefined) ?? { burst: 0, rate: 0 };
  const valid = () => now() < slice.validUntil;
  const slots = () => Math.min(concurrencyCap, slotPool ? ((slice.holdings[slotPool] as { slots: number } | undefined)?.slots ?? 0) : Number.POSITIVE_INFINITY);

  function refill(): void {
    const at = now();
    const dt = Math.max(0, at - refilledAt);
    refilledAt = at;
    for (const [name, pool] of windows) {
      const held = window(name);
      const earned = valid() ? (held.rate * dt) / windowSpan(pool) : 0;
      tokens.set(name, Math.min(held.burst, tokens.get(name)! + earned));
    }
  }

  function dayLeft(): number {
    if (!dayPool) return Number.POSITIVE_INFINITY;
    const held = slice.holdings[dayPool] as DayHolding | undefined;
    return held ? held.granted - dayUsed : 0;
  }

  /** ms until the head job could go, or undefined when only a new slice (or a finished call) can help */
  function blockedFor(job: Job): { waitMs?: number; starved?: boolean; exhausted?: string } {
    const at = now();
    if (at < pausedUntil) return { waitMs: pausedUntil - at };
    if (!valid()) return { starved: true };
    if (dayPool && dayLeft() < 1) return slice.exhausted?.includes(dayPool) ? { exhausted: dayPool } : { starved: true };
    if (inFlight >= slots()) return slots() === 0 ? { starved: true } : {};
    let waitMs = 0;
    for (const [name, pool] of windows) {
      const held = window(name);
      const perCall = options.perCall.includes(name);
      const need = perCall ? Math.max(1, Math.min(job.need, Math.floor(held.burst))) : Number.MIN_VALUE;
      const have = tokens.get(name)!;
      if (have >= need) continue;
      if (held.rate <= 0 || held.burst < Math.min(need, 1)) return { starved: true };
      waitMs = Math.max(waitMs, ((need - have) * windowSpan(pool)) / held.rate);
    }
    return waitMs > 0 ? { waitMs: Math.max(1, Math.ceil(waitMs)) } : {};
  }

  function pump(): void {
    timer?.();
    timer = undefined;
    refill();
    while (queue.length > 0) {
      const job = queue[0]!;
      const blocked = blockedFor(job);
      if (blocked.exhausted) {
        queue.shift();
        job.reject(new BudgetExhausted(blocked.exhausted));
        continue;
      }
      if (blocked.waitMs !== undefined) {
        timer = options.after(blocked.waitMs, pump);
        return;
      }
      if (blocked.starved) {
        options.onStarved?.();
        return;
      }
      if (inFlight >= slots()) return;
      queue.shift();
      for (const [name] of windows) if (options.perCall.includes(name)) tokens.set(name, tokens.get(name)! - 1);
      dayUsed += dayPool ? 1 : 0;
      inFlight += 1;
      admittedAt.set(job.seq, now());
      recent.push(now());
      job.run();
    }
  }

  return {
    /** Runs `fn` once the slice admits one call; `fn` builds its request only then. */
    schedule<T>(job: JobOptions, fn: () => Promise<T>): Promise<T> {
      if (stopped) return Promise.reject(stopped);
      return new Promise<T>((resolve, reject) => {
        const entry: Job = {
          priority: job.priority,
          seq: seq++,
          need: job.need ?? 1,
          queuedAt: now(),
          reject,
          run: () => {
            fn()
              .then(resolve, reject)
              .finally(() => {
                inFlight -= 1;
                admittedAt.delete(entry.seq);
                pump();
              });
          },
        };
        let at = queue.length;
        while (at > 0 && queue[at - 1]!.priority > entry.priority) at -= 1;
        queue.splice(at, 0, entry);
        pump();
      });
    },
    /** A new slice from the coordinator (or a solo budget's whole). */
    setSlice(next: Slice): void {
      refill();
      slice = next;
      const held = dayPool ? (next.holdings[dayPool] as DayHolding | undefined) : undefined;
      if (held && held.day !== day) {
        day = held.day;
        dayUsed = 0;
      }
      for (const [name] of windows) tokens.set(name, Math.min(tokens.get(name)!, window(name).burst));
      pump();
    },
    /** Charges a pool after the fact (execution time, measured when the answer came). */
    charge(pool: string, amount: number): void {
      refill();
      tokens.set(pool, (tokens.get(pool) ?? 0) - amount);
    },
    /** The vendor says this much is left: never hold more tokens than that. */
    atMost(pool: string, left: number): void {
      refill();
      tokens.set(pool, Math.min(tokens.get(pool) ?? 0, Math.max(0, left)));
    },
    /** Nothing is admitted before `localMs` (a 606 or a 429's Retry-After). */
    pauseUntil(localMs: number): void {
      pausedUntil = Math.max(pausedUntil, localMs);
      pump();
    },
    capConcurrency(cap: number): void {
      concurrencyCap = cap;
      pump();
    },
    concurrencyCap: () => concurrencyCap,
    /** the limiter's clock (pauses are set on it) */
    now,
    /** the member's demand over the last `spanMs`: calls admitted plus calls waiting */
    demand(spanMs: number): number {
      const floor = now() - spanMs;
      while (recent.length > 0 && recent[0]! <= floor) recent.shift();
      return recent.length + queue.length;
    },
    waiting: () => queue.length,
    inFlight: () => inFlight,
    /**
     * Calls waiting, or admitted and not ended, for longer than `boundMs`, and why the first waiting
     * one is held; null when none. A replica whose work stops with its leases still renewed shows
     * here whether it lacks budget or a call never ended.
     */
    overdue(boundMs: number): OverdueCalls | null {
      const at = now();
      const oldestQueued = queue.reduce((oldest, j) => Math.min(oldest, j.queuedAt), Number.POSITIVE_INFINITY);
      const oldestAdmitted = Math.min(...admittedAt.values());
      const waitingMs = Number.isFinite(oldestQueued) ? at - oldestQueued : null;
      const inFlightMs = Number.isFinite(oldestAdmitted) ? at - oldestAdmitted : null;
      if (!((waitingMs ?? 0) > boundMs || (inFlightMs ?? 0) > boundMs)) return null;
      return { waiting: queue.length, inFlight, slots: slots(), oldestWaitingMs: waitingMs, oldestInFlightMs: inFlightMs, blocked: queue[0] ? blockedFor(queue[0]) : null };
    },
    dayUsed: () => dayUsed,
    /** whole tokens in a per-call pool now (tests count instead of timing) */
    available(pool: string): number {
      refill();
      return Math.floor(tokens.get(pool) ?? 0);
    },
    slice: () => slice,
    /** Rejects every waiting call and every later one. */
    stop(reason = new Error('the budget is closed')): void {
      stopped = reason;
      timer?.();
      timer = undefined;
      for (const job of queue.splice(0)) job.reject(reason);
    },
  };
}

export type Limiter = ReturnType<typeof createLimiter>;
