// The one retry mechanism of the service: every loop that tries something again (a vendor call, a
// lease release, a wait for a lease) runs through `retrying`, and every backoff (those loops' and the
// inbox's durable one) is `backoffMs`. What to retry, how often and how long to wait are decisions
// of the caller, written as pure functions of the failure and the retries taken so far (see
// marketo.retry.ts, dataverse.retry.ts, src/inbox/retry.ts); this module only runs them. Our own
// rather than cockatiel: the vendors' rules need several retry budgets per call (a rate limit does
// not spend a transient retry), side effects shared across calls (Marketo's 606 pauses every caller,
// Dataverse's 429 pauses the budget) and an injected clock, which its policies do not offer.

/** Retries already taken, per budget (e.g. `transient`, `rateLimit`), by the loop deciding now. */
export type RetriesTaken = Readonly<Record<string, number>>;

/**
 * What to do after an attempt. `retry: false` ends the loop (rethrowing the error, or returning the
 * result); `retry: true` spends one retry of budget `as` and tries again after `waitMs`. A caller's
 * decision may carry more (`E`): what its loop's `effects` must do before the next attempt.
 */
export type RetryVerdict<E extends object = object> = ({ retry: false } | { retry: true; as: string; waitMs: number }) & E;

export type RetryPolicy<T, E extends object = object> = {
  /** after a failed attempt; without it nothing is retried */
  onError?: (error: unknown, taken: RetriesTaken) => RetryVerdict<E>;
  /** after an attempt that answered; without it the answer is returned (polling: retry until it is right) */
  onResult?: (result: T, taken: RetriesTaken) => RetryVerdict<E>;
  /** runs the side effects of every verdict (counting, logging, pausing others) before the loop acts on it */
  effects?: (verdict: RetryVerdict<E>, outcome: { error: unknown } | { result: T }, taken: RetriesTaken) => void;
  /** waits between attempts; default a timer (tests inject a clock) */
  sleep?: (ms: number) => Promise<void>;
};

export const sleepMs = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `attempt` until the policy says stop: returns its answer or throws its last error. */
export async function retrying<T, E extends object = object>(attempt: () => Promise<T>, policy: RetryPolicy<T, E>): Promise<T> {
  const taken: Record<string, number> = {};
  const sleep = policy.sleep ?? sleepMs;
  for (;;) {
    let verdict: RetryVerdict<E> | undefined;
    let outcome: { error: unknown } | { result: T };
    try {
      const result = await attempt();
      outcome = { result };
      verdict = policy.onResult?.(result, taken);
    } catch (error) {
      outcome = { error };
      verdict = policy.onError?.(error, taken);
    }
    if (verdict) policy.effects?.(verdict, outcome, taken);
    if (!verdict?.retry) {
      if ('error' in outcome) throw outcome.error;
      return outcome.result;
    }
    taken[verdict.as] = (taken[verdict.as] ?? 0) + 1;
    if (verdict.waitMs > 0) await sleep(verdict.waitMs);
  }
}

export type Backoff = {
  /** the first wait */
  baseMs: number;
  /** no wait is longer (unless the vendor asked for longer); default unbounded */
  maxMs?: number;
  /**
   * `equal`: half the exponential wait fixed, half random, so a burst of failures does not come
   * back as a burst; `none`: exactly the exponential wait
   */
  jitter: 'equal' | 'none';
};

/**
 * The wait before retry number `retryIndex + 1` (0 for the first): `baseMs` doubled per retry,
 * capped, jittered, and never shorter than the vendor's Retry-After (`hintMs`).
 */
export function backoffMs(backoff: Backoff, retryIndex: number, options: { hintMs?: number | undefined; random?: () => number } = {}): number {
  const exponential = Math.min(backoff.maxMs ?? Number.POSITIVE_INFINITY, backoff.baseMs * 2 ** Math.max(0, retryIndex));
  const random = options.random ?? Math.random;
  const waited = backoff.jitter === 'equal' ? exponential / 2 + random() * (exponential / 2) : exponential;
  return Math.max(waited, options.hintMs ?? 0);
}

/** Retry-After is seconds or an HTTP date; answers milliseconds from `nowMs`. */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}
