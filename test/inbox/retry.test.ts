import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultRetryPolicy, retryDelayMs } from '../../src/inbox/retry.ts';

describe('inbox retry backoff', () => {
  it('doubles per attempt within jitter, capped at the policy maximum', () => {
    expect(retryDelayMs(1, { random: () => 0 })).toBe(500);
    expect(retryDelayMs(1, { random: () => 1 })).toBe(1_000);
    expect(retryDelayMs(4, { random: () => 1 })).toBe(8_000);
    expect(retryDelayMs(40, { random: () => 1 })).toBe(defaultRetryPolicy.maxDelayMs);
  });

  it('never retries sooner than the vendor asked, nor later than the cap unless asked', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.option(fc.integer({ min: 0, max: 3_600_000 }), { nil: undefined }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (attempts, retryAfterMs, r) => {
          const delay = retryDelayMs(attempts, { retryAfterMs, random: () => r });
          expect(delay).toBeGreaterThanOrEqual(retryAfterMs ?? 0);
          expect(delay).toBeLessThanOrEqual(Math.max(defaultRetryPolicy.maxDelayMs, retryAfterMs ?? 0));
          expect(delay).toBeGreaterThanOrEqual(Math.min(defaultRetryPolicy.baseDelayMs / 2, defaultRetryPolicy.maxDelayMs / 2));
        },
      ),
    );
  });
});
