import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bucketBounds, LAST_BUCKET, latencyBucket, latencyPercentile, type BucketTally } from '../../src/inbox/latency-histogram.ts';

const histogram = (latencies: readonly number[]): BucketTally[] => {
  const counts = new Map<number, number>();
  for (const l of latencies) counts.set(latencyBucket(l), (counts.get(latencyBucket(l)) ?? 0) + 1);
  return [...counts].map(([bucket, events]) => ({ bucket, events }));
};

/** the nearest-rank percentile of the exact values */
const exact = (latencies: readonly number[], q: number) => [...latencies].sort((a, b) => a - b)[Math.max(0, Math.ceil(q * latencies.length) - 1)]!;

describe('webhook latency histogram', () => {
  it.each([
    [0, 0],
    [0.01, 0],
    [0.0105, 1],
    [0.011, 1],
    [1, 49],
    [10, 73],
    [1e9, LAST_BUCKET],
  ])('puts %f s in bucket %i', (seconds, bucket) => {
    expect(latencyBucket(seconds)).toBe(bucket);
  });

  it('every latency lies inside its bucket, and buckets are 10% wide', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.0101, max: 80_000, noNaN: true }), (seconds) => {
        const [low, high] = bucketBounds(latencyBucket(seconds));
        expect(seconds).toBeGreaterThan(low * (1 - 1e-9));
        expect(seconds).toBeLessThanOrEqual(high * (1 + 1e-9));
        expect(high / low).toBeCloseTo(1.1, 9);
      }),
    );
  });

  it('a percentile of the histogram is within 10% of the exact one (latencies from 10 ms to 22 h)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0.011, max: 80_000, noNaN: true }), { minLength: 1, maxLength: 300 }), fc.constantFrom(0.5, 0.9, 0.99), (latencies, q) => {
        const estimate = latencyPercentile(histogram(latencies), q)!;
        const truth = exact(latencies, q);
        // the estimate stays in the bucket that holds the exact nearest-rank value
        expect(Math.abs(estimate - truth) / truth).toBeLessThanOrEqual(0.1 + 1e-9);
      }),
    );
  });

  it('an empty window has no percentile; tallies of events with no latency are ignored', () => {
    expect(latencyPercentile([], 0.5)).toBeNull();
    expect(latencyPercentile([{ bucket: -1, events: 40 }], 0.99)).toBeNull();
    expect(latencyPercentile([{ bucket: -1, events: 40 }, { bucket: 49, events: 1 }], 0.5)).toBeGreaterThan(0.9);
  });
});
