import { describe, expect, it } from 'vitest';
import { backoffMs, parseRetryAfter, retrying, type RetryVerdict } from '../src/retry.ts';

describe('retrying', () => {
  it('tries again while the policy says so, spending each retry from its own budget, then returns the answer', async () => {
    const failures = [new Error('a'), new Error('b'), new Error('a')];
    const waited: number[] = [];
    const seen: Record<string, number>[] = [];
    const result = await retrying(
      () => {
        const next = failures.shift();
        return next ? Promise.reject(next) : Promise.resolve('done');
      },
      {
        onError: (error, taken): RetryVerdict => {
          seen.push({ ...taken });
          return { retry: true, as: (error as Error).message, waitMs: 10 };
        },
        sleep: (ms) => {
          waited.push(ms);
          return Promise.resolve();
        },
      },
    );
    expect(result).toBe('done');
    expect(seen).toEqual([{}, { a: 1 }, { a: 1, b: 1 }]);
    expect(waited).toEqual([10, 10, 10]);
  });

  it('rethrows the last error once the policy gives up, after running its effects', async () => {
    const effects: boolean[] = [];
    let attempts = 0;
    const failing = retrying(
      () => {
        attempts++;
        return Promise.reject(new Error(`try ${attempts}`));
      },
      {
        onError: (_error, taken) => ((taken['t'] ?? 0) < 2 ? { retry: true, as: 't', waitMs: 0 } : { retry: false }),
        effects: (verdict) => effects.push(verdict.retry),
      },
    );
    await expect(failing).rejects.toThrow('try 3');
    expect(effects).toEqual([true, true, false]);
  });

  it('polls: retries an answer the policy does not accept, and returns the one it does', async () => {
    let answer = 0;
    const result = await retrying(() => Promise.resolve(++answer), {
      onResult: (value) => (value < 4 ? { retry: true, as: 'poll', waitMs: 0 } : { retry: false }),
    });
    expect(result).toBe(4);
  });

  it('retries nothing without a policy for errors', async () => {
    let attempts = 0;
    await expect(retrying(() => Promise.reject(new Error(`try ${++attempts}`)), {})).rejects.toThrow('try 1');
  });
});

describe('backoffMs', () => {
  it('doubles per retry up to the cap, jitters half of it, and never waits less than the vendor asked', () => {
    const equal = { baseMs: 100, maxMs: 1000, jitter: 'equal' } as const;
    expect(backoffMs(equal, 0, { random: () => 0 })).toBe(50);
    expect(backoffMs(equal, 0, { random: () => 1 })).toBe(100);
    expect(backoffMs(equal, 3, { random: () => 1 })).toBe(800);
    expect(backoffMs(equal, 10, { random: () => 1 })).toBe(1000);
    expect(backoffMs(equal, 0, { random: () => 0, hintMs: 5000 })).toBe(5000);
    expect(backoffMs({ baseMs: 500, jitter: 'none' }, 2)).toBe(2000);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, and nothing from an empty header', () => {
    expect(parseRetryAfter('3', 0)).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfter('', 0)).toBeUndefined();
    expect(parseRetryAfter(null, 0)).toBeUndefined();
    expect(parseRetryAfter('soon', 0)).toBeUndefined();
  });
});
