// Webhook-to-other-side latency kept as a histogram per minute (throughput_minute), so the console's
// throughput view reads a few thousand tallies instead of every event of the last hours. Buckets
// grow by 10%: bucket 0 holds latencies up to 10 ms, bucket k (k >= 1) those in
// (10 ms * 1.1^(k-1), 10 ms * 1.1^k], and the last one everything past about 23 hours. A percentile is
// interpolated inside its bucket (as Prometheus' histogram_quantile does), so it is within one
// bucket's width (10%) of the exact value.

export const FIRST_BOUND_SECONDS = 0.01;
export const BUCKET_RATIO = 1.1;
/** the overflow bucket: latencies past 10 ms * 1.1^167 (about 23 h) */
export const LAST_BUCKET = 168;
/** tally rows of events that are not webhooks (sweep, operator): counted, with no latency */
export const NO_LATENCY = -1;

/** The bucket of a latency, as the SQL expression below computes it. */
export function latencyBucket(seconds: number): number {
  if (!(seconds > FIRST_BOUND_SECONDS)) return 0;
  return Math.min(LAST_BUCKET, Math.ceil(Math.log(seconds / FIRST_BOUND_SECONDS) / Math.log(BUCKET_RATIO)));
}

/** Lower and upper bound of a bucket, in seconds (the overflow bucket's upper bound is its lower one). */
export function bucketBounds(bucket: number): [number, number] {
  if (bucket <= 0) return [0, FIRST_BOUND_SECONDS];
  const low = FIRST_BOUND_SECONDS * BUCKET_RATIO ** (bucket - 1);
  return [low, bucket >= LAST_BUCKET ? low : FIRST_BOUND_SECONDS * BUCKET_RATIO ** bucket];
}

/**
 * SQL for the bucket of an event completing now: the inbox computes it in the statement that marks
 * events done (`completed` and `received` are column expressions of that statement).
 */
export function latencyBucketSql(completed: string, received: string): string {
  return `least(${LAST_BUCKET}, greatest(0, ceil(ln(greatest(extract(epoch FROM ${completed} - ${received})::float8, ${FIRST_BOUND_SECONDS}) / ${FIRST_BOUND_SECONDS}) / ln(${BUCKET_RATIO}))))::smallint`;
}

export interface BucketTally {
  bucket: number;
  events: number;
}

/** The q-quantile (0..1) of a histogram, interpolated inside its bucket; null when it is empty. */
export function latencyPercentile(tallies: readonly BucketTally[], q: number): number | null {
  const buckets = tallies.filter((t) => t.bucket >= 0 && t.events > 0).sort((a, b) => a.bucket - b.bucket);
  const total = buckets.reduce((sum, t) => sum + t.events, 0);
  if (total === 0) return null;
  const rank = Math.min(1, Math.max(0, q)) * total;
  let below = 0;
  for (const t of buckets) {
    if (below + t.events >= rank) {
      const [low, high] = bucketBounds(t.bucket);
      return low + ((rank - below) / t.events) * (high - low);
    }
    below += t.events;
  }
  return bucketBounds(buckets[buckets.length - 1]!.bucket)[1];
}
