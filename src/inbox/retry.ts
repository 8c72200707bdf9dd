// Backoff for inbox retries: exponential with "equal jitter" (half fixed, half random) so a
// burst of failures does not come back as a burst, and never sooner than the vendor asked.
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
  const random = options.random ?? Math.random;
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempts - 1));
  const jittered = exponential / 2 + random() * (exponential / 2);
  return Math.round(Math.max(jittered, options.retryAfterMs ?? 0));
}
