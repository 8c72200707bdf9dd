import { backoffMs } from '../retry.ts';

// The inbox's backoff between attempts of one event (its wait is stored as nextAttemptAt, so it
// survives a restart): the service's one backoff (src/retry.ts), exponential with "equal jitter"
// so a burst of failures does not come back as a burst, and never sooner than the vendor asked.
export interface RetryPolicy {
  baseDelayMs: number;
  maxDelayMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { baseDelayMs: 1_000, maxDelayMs: 10 * 60_000 };

export function retryDelayMs(
  attempts: number,
  options: { retryAfterMs?: number | undefined; random?: () => number; policy?: RetryPolicy } = {},
): number {
  const policy = options.policy ?? defaultRetryPolicy;
  const backoff = { baseMs: policy.baseDelayMs, maxMs: policy.maxDelayMs, jitter: 'equal' } as const;
  return Math.round(backoffMs(backoff, attempts - 1, { hintMs: options.retryAfterMs, ...(options.random ? { random: options.random } : {}) }));
}
