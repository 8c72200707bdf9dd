import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Database } from '../src/db/database.ts';
import { latencyBucketSql, NO_LATENCY } from '../src/inbox/latency-histogram.ts';

/** A fresh database on the given PostgreSQL server, dropped afterwards: a benchmark never touches existing data. */
export async function createBenchDatabase(serverUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `mds_bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const parsed = new URL(serverUrl);
  parsed.pathname = `/${name}`;
  return {
    url: parsed.toString(),
    async drop() {
      const again = new pg.Client({ connectionString: serverUrl });
      await again.connect();
      await again.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.end();
    },
  };
}

/** Runs `fn` on a fresh PostgreSQL database when a server is configured, else on the embedded one. */
export async function onBenchDatabase<T>(serverUrl: string | undefined, fn: (databaseUrl: string | undefined) => Promise<T>): Promise<T> {
  if (!serverUrl) return fn(undefined);
  const database = await createBenchDatabase(serverUrl);
  try {
    return await fn(database.url);
  } finally {
    await database.drop();
  }
}

/**
 * Adds seeded done events (those `where` selects, a condition on change_event with `params` as
 * $1...) to throughput_minute with the buckets completeMany uses: a seeded store reads as one the
 * service filled.
 */
export async function tallyDoneEvents(db: Database, where: string, ...params: unknown[]): Promise<void> {
  await db.prisma.$executeRawUnsafe(
    `INSERT INTO throughput_minute (minute, source, "latencyBucket", events)
     SELECT date_trunc('minute', "completedAt"), source,
            CASE WHEN origin = 'WEBHOOK' THEN ${latencyBucketSql('"completedAt"', '"receivedAt"')} ELSE ${NO_LATENCY} END, count(*)::int
       FROM change_event WHERE status = 'DONE' AND (${where}) GROUP BY 1, 2, 3
     ON CONFLICT (minute, source, "latencyBucket") DO UPDATE SET events = throughput_minute.events + excluded.events`,
    ...params,
  );
}
