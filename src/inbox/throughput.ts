import type { Db } from '../db/database.ts';
import type { ChangeSource } from '../db/generated/client.ts';
import { latencyPercentile } from './latency-histogram.ts';

// Throughput and webhook latency read from throughput_minute, the tallies completeMany adds to as
// it marks events done: a window of hours costs a few thousand tally rows whatever the traffic.

export interface Throughput {
  hours: number;
  /** minutes with at least one completed event, oldest first */
  perMinute: { minute: Date; marketoToDynamics: number; dynamicsToMarketo: number; operator: number }[];
  /** per source, webhook events only (arrival to done), percentiles within one bucket (10%) */
  latency: { source: ChangeSource; events: number; p50Seconds: number; p99Seconds: number }[];
}

export async function readThroughput(db: Db, hours: number): Promise<Throughput> {
  const [perMinute, buckets] = await Promise.all([
    db.$queryRaw<{ minute: Date; source: ChangeSource; count: number }[]>`
      SELECT minute, source, sum(events)::int AS count
        FROM throughput_minute WHERE minute >= date_trunc('minute', now() - make_interval(hours => ${hours}::int))
       GROUP BY 1, 2 ORDER BY 1`,
    db.$queryRaw<{ source: ChangeSource; bucket: number; events: number }[]>`
      SELECT source, "latencyBucket"::int AS bucket, sum(events)::int AS events
        FROM throughput_minute WHERE minute >= date_trunc('minute', now() - make_interval(hours => ${hours}::int)) AND "latencyBucket" >= 0
       GROUP BY 1, 2`,
  ]);
  const minutes = new Map<number, Throughput['perMinute'][number]>();
  for (const row of perMinute) {
    const key = row.minute.getTime();
    const point = minutes.get(key) ?? { minute: row.minute, marketoToDynamics: 0, dynamicsToMarketo: 0, operator: 0 };
    if (row.source === 'MARKETO') point.marketoToDynamics += row.count;
    else if (row.source === 'DYNAMICS') point.dynamicsToMarketo += row.count;
    else point.operator += row.count;
    minutes.set(key, point);
  }
  const sources = [...new Set(buckets.map((b) => b.source))].sort();
  const latency = sources.map((source) => {
    const tallies = buckets.filter((b) => b.source === source);
    return {
      source,
      events: tallies.reduce((sum, t) => sum + t.events, 0),
      p50Seconds: latencyPercentile(tallies, 0.5) ?? 0,
      p99Seconds: latencyPercentile(tallies, 0.99) ?? 0,
    };
  });
  return { hours, perMinute: [...minutes.values()], latency };
}

/** Events completed in the last hour (whole minutes: the current one and the 60 before it). */
export async function completedLastHour(db: Db): Promise<number> {
  const [row] = await db.$queryRaw<{ count: number }[]>`
    SELECT coalesce(sum(events), 0)::int AS count FROM throughput_minute WHERE minute >= date_trunc('minute', now() - interval '1 hour')`;
  return row?.count ?? 0;
}
