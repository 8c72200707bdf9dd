// Retention on PostgreSQL (issue 15): storage under a steady load over a simulated month, and the
// cost of one pruning pass on a large store. The month is simulated day by day: a day's traffic is
// written in SQL with that day's timestamps (done change events with their throughput tallies, one
// activity entry each, a sweep every 5 minutes), then the real pruning pass runs with its clock at
// the end of that day, then a plain VACUUM (what autovacuum does many times a day: it makes the
// deleted rows' space reusable; nothing is given back to the file system and no table is locked).
// Event ids are time-ordered like the service's (UUIDv7), so their index fills and empties in order.
// Alone: tsx bench/retention.bench.ts [--quick] with BENCH_DATABASE_URL or TEST_DATABASE_URL.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { openDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { projectPaths } from '../src/paths.ts';
import { defaultRetention, pruneOnce, type PruneResult, type RetentionPolicy } from '../src/retention/prune.ts';
import { createBenchDatabase, tallyDoneEvents } from './database.ts';

const DAY_MS = 86_400_000;
const MB = 1024 * 1024;
const TABLES = ['change_event', 'activity', 'sync_run', 'throughput_minute'] as const;

export interface MonthOptions {
  /** steady changes per second, all day */
  changesPerSecond: number;
  days: number;
  policy: RetentionPolicy;
}

export interface MonthDay {
  day: number;
  /** rows of each table after that day's pass */
  rows: Record<(typeof TABLES)[number], number>;
  /** total size (heap, indexes, TOAST) of the pruned tables after the pass and VACUUM, MB */
  totalMb: number;
  pruneSeconds: number;
  removed: PruneResult['removed'];
}

/** One simulated day of traffic ending at `dayStart + 1 day`, written with that day's timestamps. */
async function writeDay(db: Database, dayStart: Date, changes: number): Promise<void> {
  const sql = (text: string, ...values: unknown[]) => db.prisma.$executeRawUnsafe(text, ...values);
  const step = DAY_MS / changes;
  await sql(
    `INSERT INTO change_event (id, source, origin, operation, "marketoId", "dynamicsEntity", "dynamicsId", payload, "dedupeKey", status, attempts,
                               "nextAttemptAt", "receivedAt", "completedAt", "updatedAt")
     SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || substr(md5(i::text || $1::text), 1, 20))::uuid,
            (CASE WHEN i % 2 = 0 THEN 'MARKETO' ELSE 'DYNAMICS' END)::"ChangeSource", (CASE WHEN i % 20 = 0 THEN 'SWEEP' ELSE 'WEBHOOK' END)::"ChangeOrigin", 'UPDATE',
            1 + (i % 100000), CASE WHEN i % 2 = 0 THEN NULL ELSE 'LEAD' END::"DynamicsEntity", CASE WHEN i % 2 = 0 THEN NULL ELSE md5('d' || (i % 100000))::uuid END,
            jsonb_build_object('fields', jsonb_build_array('title', 'phone')), 'month:' || $1::text || ':' || i, 'DONE', 1,
            t, t, t + (300 + i % 900) * interval '1 millisecond', t
       FROM (SELECT i, $2::timestamptz + i * $3::float8 * interval '1 millisecond' AS t FROM generate_series(0, $4::int - 1) AS i) AS s`,
    dayStart.toISOString(),
    dayStart,
    step,
    changes,
  );
  await tallyDoneEvents(db, `"receivedAt" >= $1::timestamptz AND "receivedAt" < $1::timestamptz + interval '1 day'`, dayStart);
  await sql(
    `INSERT INTO activity (type, "marketoId", "dynamicsEntity", "dynamicsId", fields, message, "occurredAt")
     SELECT (CASE WHEN i % 2 = 0 THEN 'UPDATED_IN_DYNAMICS' ELSE 'UPDATED_IN_MARKETO' END)::"ActivityType", 1 + (i % 100000), 'LEAD', md5('d' || (i % 100000))::uuid,
            jsonb_build_array(jsonb_build_object('field', 'title', 'side', 'DYNAMICS', 'oldValue', 'Manager ' || (i % 97), 'newValue', 'Director ' || (i % 89))),
            'updated 1 field(s)', $1::timestamptz + i * $2::float8 * interval '1 millisecond'
       FROM generate_series(0, $3::int - 1) AS i`,
    dayStart,
    step,
    changes,
  );
  await sql(
    `INSERT INTO sync_run (id, trigger, status, owner, "startedAt", "finishedAt", counts)
     SELECT gen_random_uuid(), 'SCHEDULE', 'SUCCEEDED', 'bench', $1::timestamptz + i * interval '5 minutes', $1::timestamptz + i * interval '5 minutes' + interval '12 seconds',
            jsonb_build_object('marketoChanges', 40, 'dynamicsChanges', 35, 'marketoCalls', 6, 'dynamicsCalls', 4)
       FROM generate_series(0, 287) AS i`,
    dayStart,
  );
}

async function tableFigures(db: Database): Promise<{ rows: MonthDay['rows']; totalMb: number }> {
  const rows = {} as MonthDay['rows'];
  for (const table of TABLES) {
    const [row] = await db.prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${table}`);
    rows[table] = row?.n ?? 0;
  }
  const [size] = await db.prisma.$queryRawUnsafe<{ bytes: bigint }[]>(
    `SELECT sum(pg_total_relation_size(t::regclass))::bigint AS bytes FROM unnest($1::text[]) AS t`,
    [...TABLES],
  );
  return { rows, totalMb: Number(size?.bytes ?? 0n) / MB };
}

/** A steady load for `days` simulated days, a pruning pass at the end of each. */
export async function runRetentionMonth(serverUrl: string, options: MonthOptions): Promise<MonthDay[]> {
  const database = await createBenchDatabase(serverUrl);
  const db = await openDatabase({ url: database.url, dataDir: 'unused', poolSize: 4 });
  try {
    await migrate(db, projectPaths());
    const first = new Date('2026-01-01T00:00:00Z');
    const changes = Math.round(options.changesPerSecond * 86_400);
    const days: MonthDay[] = [];
    for (let day = 0; day < options.days; day++) {
      const dayStart = new Date(first.getTime() + day * DAY_MS);
      await writeDay(db, dayStart, changes);
      const started = performance.now();
      const result = await pruneOnce({ db: db.prisma, policy: options.policy, now: () => new Date(dayStart.getTime() + DAY_MS) });
      const pruneSeconds = (performance.now() - started) / 1000;
      await db.prisma.$executeRawUnsafe(`VACUUM ${TABLES.join(', ')}`);
      days.push({ day: day + 1, ...(await tableFigures(db)), pruneSeconds, removed: result.removed });
    }
    return days;
  } finally {
    await db.close();
    await database.drop();
  }
}

export interface LargePassFigure {
  rowsBefore: number;
  removed: number;
  seconds: number;
  batches: number;
}

/**
 * One pruning pass on a store seeded elsewhere (the console bench's 10M activities and 2M change
 * events): its clock is set so that about half of each table is due, as when retention is first
 * switched on, or shortened, on a store that has grown for a long time.
 */
export async function pruneLargeStore(db: Database): Promise<LargePassFigure> {
  const [span] = await db.prisma.$queryRawUnsafe<{ activities: number; events: number; activityMid: Date; eventMid: Date }[]>(`
    SELECT (SELECT count(*)::int FROM activity) AS activities, (SELECT count(*)::int FROM change_event) AS events,
           (SELECT min("occurredAt") + (max("occurredAt") - min("occurredAt")) / 2 FROM activity) AS "activityMid",
           (SELECT min("completedAt") + (max("completedAt") - min("completedAt")) / 2 FROM change_event WHERE status = 'DONE') AS "eventMid"`);
  const now = new Date();
  const daysBefore = (mid: Date) => (now.getTime() - mid.getTime()) / DAY_MS;
  const policy: RetentionPolicy = { ...defaultRetention, activityDays: daysBefore(span!.activityMid), doneEventDays: daysBefore(span!.eventMid) };
  const started = performance.now();
  const result = await pruneOnce({ db: db.prisma, policy, now: () => now });
  return {
    rowsBefore: span!.activities + span!.events,
    removed: result.removed.activity + result.removed.change_event,
    seconds: (performance.now() - started) / 1000,
    batches: result.batches,
  };
}

/** Defaults: 2 changes/s for 30 days with retention shortened so that every table reaches its plateau within the month. */
export function monthOptions(quick: boolean): MonthOptions {
  return quick
    ? { changesPerSecond: 0.25, days: 10, policy: { ...defaultRetention, doneEventDays: 3, activityDays: 5, syncRunDays: 3 } }
    : { changesPerSecond: 2, days: 30, policy: { ...defaultRetention, doneEventDays: 7, activityDays: 14, syncRunDays: 7 } };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
  if (!server) throw new Error('set BENCH_DATABASE_URL or TEST_DATABASE_URL');
  const options = monthOptions(process.argv.includes('--quick'));
  console.log(`${options.changesPerSecond} changes/s, retention: done events ${options.policy.doneEventDays} d, activities ${options.policy.activityDays} d, sweeps ${options.policy.syncRunDays} d`);
  console.log('| day | change_event | activity | sync_run | throughput_minute | MB | prune s |');
  console.log('|---|---|---|---|---|---|---|');
  for (const d of await runRetentionMonth(server, options)) {
    console.log(`| ${d.day} | ${d.rows.change_event} | ${d.rows.activity} | ${d.rows.sync_run} | ${d.rows.throughput_minute} | ${d.totalMb.toFixed(1)} | ${d.pruneSeconds.toFixed(2)} |`);
  }
}
