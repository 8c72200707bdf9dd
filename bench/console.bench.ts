// The operator console's queries on a large store: PostgreSQL seeded in SQL (generate_series) with
// 1M links, 10M activities and 2M change events (--quick: 20k / 200k / 40k), then each GraphQL
// operation the console sends, run through the real handler, timed end to end (parse, validate,
// resolve, SQL). The live reads of both systems are stubbed: they cost vendor calls, not database
// time. Goal: every p95 under 200 ms. Alone: tsx bench/console.bench.ts [--quick] [--prune] (then
// one retention pass on the same store: bench/retention.bench.ts)
import { createSuppressions } from '../src/security/suppression.ts';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { createApiTokens, ensureConfiguredToken } from '../src/auth/tokens.ts';
import { openDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { createGraphQLHandler } from '../src/graphql/handler.ts';
import { projectPaths } from '../src/paths.ts';
import { createBenchDatabase, tallyDoneEvents } from './database.ts';
import { pruneLargeStore, type LargePassFigure } from './retention.bench.ts';

export interface ConsoleBenchOptions {
  links: number;
  activities: number;
  events: number;
  /** timed runs per query (after two warm-up runs) */
  runs: number;
  databaseUrl: string | undefined;
}

export interface ConsoleQueryFigure {
  name: string;
  p50: number;
  p95: number;
  max: number;
}

export type ConsoleBenchResult =
  | { skipped: string }
  | { links: number; activities: number; events: number; seedSeconds: number; queries: ConsoleQueryFigure[]; prunePass?: LargePassFigure };

const TOKEN = 'console-bench-token-0123456789';

async function seedStore(db: Database, o: ConsoleBenchOptions): Promise<void> {
  const sql = (text: string) => db.prisma.$executeRawUnsafe(text);
  // links: half leads, half contacts; a canonical snapshot with a lower-cased email; 1% filtered
  await sql(`
    INSERT INTO sync_link (id, "marketoId", "dynamicsEntity", "dynamicsId", status, snapshot, "fieldOrigins", "lastSyncedAt", "createdAt", "updatedAt")
    SELECT gen_random_uuid(), i, CASE WHEN i % 2 = 0 THEN 'LEAD' ELSE 'CONTACT' END::"DynamicsEntity", md5('d' || i)::uuid,
           CASE WHEN i % 100 = 0 THEN 'FILTERED' ELSE 'ACTIVE' END::"LinkStatus",
           jsonb_build_object('email', 'person' || i || '@example.com', 'firstName', 'First' || i, 'lastName', 'Last' || i, 'title', 'Title ' || (i % 97)),
           jsonb_build_object('title', jsonb_build_object('side', 'MARKETO', 'at', '2026-11-01T00:00:00.000Z')),
           now() - (i % 1000) * interval '1 minute', now() - interval '30 days', now()
      FROM generate_series(1, ${o.links}) AS i`);
  // activities: ten per person on average, spread over the last weeks, ids increasing with time;
  // batches of a million keep each statement's memory bounded
  const types = ['UPDATED_IN_DYNAMICS', 'UPDATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS', 'UPDATED_IN_MARKETO', 'COLLISION_RESOLVED', 'LINKED', 'SYNC_FAILED', 'UPDATED_IN_DYNAMICS', 'VALIDATION_REJECTED', 'UPDATED_IN_MARKETO'];
  const typeArray = `ARRAY[${types.map((t) => `'${t}'`).join(',')}]::"ActivityType"[]`;
  for (let from = 1; from <= o.activities; from += 1_000_000) {
    const to = Math.min(o.activities, from + 999_999);
    await sql(`
      INSERT INTO activity (type, "marketoId", "dynamicsEntity", "dynamicsId", fields, message, "occurredAt")
      SELECT (${typeArray})[1 + (i % 10)], p, CASE WHEN p % 2 = 0 THEN 'LEAD' ELSE 'CONTACT' END::"DynamicsEntity", md5('d' || p)::uuid,
             CASE WHEN i % 10 IN (0, 1, 2, 3, 7, 9) THEN jsonb_build_array(jsonb_build_object('field', 'title', 'side', CASE WHEN i % 2 = 0 THEN 'DYNAMICS' ELSE 'MARKETO' END, 'oldValue', 'Old', 'newValue', 'New ' || i))
                  WHEN i % 10 = 4 THEN jsonb_build_array(jsonb_build_object('field', 'title', 'side', 'DYNAMICS', 'marketoValue', 'M' || i, 'dynamicsValue', 'D' || i, 'winner', 'MARKETO', 'rule', 'LEAD_MARKETO_WINS', 'losingValue', 'D' || i, 'newValue', 'M' || i))
                  ELSE '[]'::jsonb END,
             CASE WHEN i % 10 IN (6, 8) THEN 'Dynamics answered 400: telephone1 has an invalid format' ELSE 'updated 1 field(s)' END,
             now() - (${o.activities} - i) * interval '100 milliseconds'
        FROM (SELECT i, (1 + ((i::bigint * 7919) % ${o.links}))::int AS p FROM generate_series(${from}, ${to}) AS i) AS s`);
  }
  // change events: done over the last 24 h (webhooks mostly, done 0.2-5 s after arrival), a
  // backlog of pending ones, some failed and some dead
  await sql(`
    INSERT INTO change_event (id, source, origin, operation, "marketoId", "dynamicsEntity", "dynamicsId", payload, "dedupeKey", status, attempts,
                              "nextAttemptAt", "lastError", "receivedAt", "completedAt", "updatedAt")
    SELECT gen_random_uuid(), (ARRAY['MARKETO','DYNAMICS','DYNAMICS','OPERATOR']::"ChangeSource"[])[1 + i % 4],
           (CASE WHEN i % 4 = 3 THEN 'SWEEP' ELSE 'WEBHOOK' END)::"ChangeOrigin", 'UPDATE',
           1 + ((i * 31) % ${o.links}), CASE WHEN i % 4 = 0 THEN NULL ELSE 'LEAD' END::"DynamicsEntity", CASE WHEN i % 4 = 0 THEN NULL ELSE md5('d' || (1 + ((i * 31) % ${o.links})))::uuid END,
           '{}'::jsonb, 'bench:' || i,
           (CASE WHEN i % 1000 = 1 THEN 'PENDING' WHEN i % 5000 = 2 THEN 'FAILED' WHEN i % 5000 = 3 THEN 'DEAD' ELSE 'DONE' END)::"ChangeEventStatus",
           CASE WHEN i % 5000 IN (2, 3) THEN 3 ELSE 1 END, now(),
           CASE WHEN i % 5000 IN (2, 3) THEN 'Dynamics transient 0x80040216: An unexpected error occurred.' END,
           t - (200 + (i % 4800)) * interval '1 millisecond', CASE WHEN i % 1000 = 1 OR i % 5000 IN (2, 3) THEN NULL ELSE t END, now()
      FROM (SELECT i, now() - (${o.events} - i) * (interval '24 hours' / ${o.events}) AS t FROM generate_series(1, ${o.events}) AS i) AS s`);
  // their throughput tallies, as completeMany writes them
  await tallyDoneEvents(db, 'true');
  await sql(`
    INSERT INTO sync_run (id, trigger, status, owner, "startedAt", "finishedAt", counts)
    SELECT gen_random_uuid(), 'SCHEDULE', 'SUCCEEDED', 'bench', now() - i * interval '5 minutes', now() - i * interval '5 minutes' + (10 + i % 50) * interval '1 second',
           jsonb_build_object('marketoChanges', i % 300, 'dynamicsChanges', i % 200, 'marketoCalls', 5 + i % 20, 'dynamicsCalls', 3 + i % 10)
      FROM generate_series(1, 2000) AS i`);
  await db.prisma.$executeRawUnsafe('VACUUM ANALYZE');
}

const PERSON = `query Person($q: String!, $history: [ActivityType!]) { findPeople(query: $q) {
  id marketoId dynamicsEntity dynamicsId status lastSyncedAt createdAt liveErrors
  fieldLineage { field marketoField dynamicsAttribute direction marketoValue dynamicsValue liveRead agreedValue inAgreement lastSetBy lastSetAt state reason heldBackValue lastChange { id type occurredAt } lastChangeEvent { id source origin operation receivedAt } }
  history: activities(types: $history, first: 20) { edges { node { id type occurredAt message dynamicsEntity dynamicsId } } }
  openChangeEvents { id status source operation attempts reason nextAttemptAt } } }`;
const TIMELINE = `query Timeline($m: ID, $types: [ActivityType!]) { activities(marketoId: $m, types: $types, first: 30) {
  pageInfo { hasNextPage endCursor } edges { node { id type occurredAt message marketoId dynamicsEntity dynamicsId changeEventId fields { field side oldValue newValue baseValue losingValue marketoValue dynamicsValue winner rule } } } } }`;
const EVENT = 'id source origin operation marketoId dynamicsEntity dynamicsId attempts reason nextAttemptAt receivedAt';
const HISTORY = ['LINKED', 'LINK_MOVED', 'CREATED_IN_DYNAMICS', 'CREATED_IN_MARKETO', 'DELETED_IN_DYNAMICS', 'DELETED_IN_MARKETO', 'SYNC_FILTERED'];

function consoleQueries(links: number): { name: string; query: string; variables: () => Record<string, unknown> }[] {
  const person = () => 1 + Math.floor(Math.random() * links);
  return [
    { name: 'find a person by email (+ lineage, history)', query: PERSON, variables: () => ({ q: `PERSON${person()}@example.com`, history: HISTORY }) },
    { name: 'find a person by Marketo id (+ lineage, history)', query: PERSON, variables: () => ({ q: String(person()), history: HISTORY }) },
    { name: "a person's timeline, newest 30", query: TIMELINE, variables: () => ({ m: String(person()), types: null }) },
    { name: "a person's timeline, collisions only", query: TIMELINE, variables: () => ({ m: String(person()), types: ['COLLISION_RESOLVED'] }) },
    { name: "everyone's timeline, failures only", query: TIMELINE, variables: () => ({ m: null, types: ['SYNC_FAILED', 'VALIDATION_REJECTED'] }) },
    { name: 'work queue: backlog per source', query: '{ syncStatus { backlog { pending processing failed dead } oldestPendingAgeSeconds lastHourThroughput backlogBySource { source entity pending processing failed dead oldestPendingAgeSeconds } } }', variables: () => ({}) },
    { name: 'work queue: failed events', query: `{ changeEvents(status: [FAILED], first: 50) { edges { node { ${EVENT} } } } }`, variables: () => ({}) },
    { name: 'work queue: dead events of a source', query: `{ changeEvents(status: [DEAD], source: DYNAMICS, entity: LEAD, first: 100) { edges { node { ${EVENT} } } } }`, variables: () => ({}) },
    { name: 'sweeps: last 60 runs', query: '{ syncRuns(first: 60) { edges { node { id trigger status startedAt finishedAt durationSeconds changesFound apiCalls counts { name value } error notes } } } }', variables: () => ({}) },
    { name: 'field mappings (+ back-fill progress)', query: '{ fieldMappings { id entity canonicalField marketoField dynamicsAttribute direction collisionWinner effectiveWinner enabled access { marketo { exists updateable } dynamics { canRead canUpdate } } backfill { running linksDone linksTotal } } }', variables: () => ({}) },
    { name: 'throughput + latency, last 6 h', query: '{ throughput(hours: 6) { hours perMinute { minute marketoToDynamics dynamicsToMarketo operator } latency { source events p50Seconds p99Seconds } } }', variables: () => ({}) },
  ];
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;

/** `prune`: after the queries, one retention pass on the same store (issue 15's row on 10M rows) */
export async function runConsoleBench(o: ConsoleBenchOptions, then: { prune?: boolean } = {}): Promise<ConsoleBenchResult> {
  if (!o.databaseUrl) return { skipped: 'needs PostgreSQL: set BENCH_DATABASE_URL or TEST_DATABASE_URL' };
  const database = await createBenchDatabase(o.databaseUrl);
  const db = await openDatabase({ url: database.url, dataDir: 'unused', poolSize: 10 });
  try {
    await migrate(db, projectPaths());
    const seedStart = performance.now();
    await seedStore(db, o);
    const seedSeconds = (performance.now() - seedStart) / 1000;
    // one back-fill in progress, so its progress is part of the mappings view
    await db.prisma.fieldMapping.updateMany({ where: { entity: 'CONTACT', canonicalField: 'city' }, data: { backfillRequestedAt: new Date() } });
    await db.prisma.$executeRawUnsafe(`INSERT INTO sync_cursor (system, scope, token, watermark, "updatedAt") SELECT 'DYNAMICS', 'full:CONTACT', id::text, now(), now() FROM sync_link WHERE "dynamicsEntity" = 'CONTACT' ORDER BY id OFFSET ${Math.floor(o.links / 4)} LIMIT 1`);

    await ensureConfiguredToken(db.prisma, TOKEN);
    const handler = createGraphQLHandler({
      prisma: db.prisma,
      logger: pino({ level: 'silent' }),
      tokens: createApiTokens(db.prisma),
      graphiql: false,
      erasure: { suppressions: createSuppressions(db.prisma, 'bench-erasure-key-0123456789-abcdefgh'), owner: 'bench', leaseMs: 10_000 },
      actions: {
        requestPersonSync: () => Promise.reject(new Error('read-only bench')),
        requestSweep: () => Promise.reject(new Error('read-only bench')),
        resolveCollision: () => Promise.reject(new Error('read-only bench')),
        validateFieldMapping: () => Promise.reject(new Error('read-only bench')),
        scheduleBackfill: () => Promise.reject(new Error('read-only bench')),
      },
      connectorHealth: () => Promise.resolve({}),
      apiUsage: () => Promise.resolve({ marketo: { callsToday: 0, dailyQuota: 50_000 }, dynamics: { calls: 0 } }),
      live: {
        records: () => Promise.resolve({ marketo: { title: 'Title 1' }, dynamics: { title: 'Title 1' }, dynamicsSyncFilter: null, errors: [] }),
        refreshFieldAccess: () => Promise.resolve(),
      },
    });
    const queries: ConsoleQueryFigure[] = [];
    for (const q of consoleQueries(o.links)) {
      const times: number[] = [];
      for (let run = 0; run < o.runs + 2; run++) {
        const started = performance.now();
        const response = await handler.yoga.fetch('http://bench/graphql', {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
          body: JSON.stringify({ query: q.query, variables: q.variables() }),
        });
        const body = (await response.json()) as { errors?: { message: string }[] };
        const elapsed = performance.now() - started;
        if (body.errors?.length) throw new Error(`${q.name}: ${body.errors.map((e) => e.message).join('; ')}`);
        if (run >= 2) times.push(elapsed);
      }
      times.sort((a, b) => a - b);
      queries.push({ name: q.name, p50: percentile(times, 50), p95: percentile(times, 95), max: times.at(-1) ?? Number.NaN });
    }
    const prunePass = then.prune ? await pruneLargeStore(db) : undefined;
    return { links: o.links, activities: o.activities, events: o.events, seedSeconds, queries, ...(prunePass ? { prunePass } : {}) };
  } finally {
    await db.close();
    await database.drop();
  }
}

export function consoleBenchOptions(quick: boolean, databaseUrl: string | undefined): ConsoleBenchOptions {
  return quick
    ? { links: 20_000, activities: 200_000, events: 40_000, runs: 20, databaseUrl }
    : { links: 1_000_000, activities: 10_000_000, events: 2_000_000, runs: 30, databaseUrl };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const result = await runConsoleBench(consoleBenchOptions(quick, process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL), { prune: process.argv.includes('--prune') });
  if ('skipped' in result) console.log(`console bench skipped: ${result.skipped}`);
  else {
    console.log(`seeded ${result.links} links, ${result.activities} activities, ${result.events} change events in ${result.seedSeconds.toFixed(0)} s`);
    console.log('| console query | p50 ms | p95 ms | max ms |');
    console.log('|---|---|---|---|');
    for (const q of result.queries) console.log(`| ${q.name} | ${q.p50.toFixed(1)} | ${q.p95.toFixed(1)} | ${q.max.toFixed(1)} |`);
    const p = result.prunePass;
    if (p) console.log(`retention pass on ${p.rowsBefore} rows: removed ${p.removed} in ${p.seconds.toFixed(1)} s (${p.batches} batches, ${Math.round(p.removed / p.seconds)} rows/s)`);
  }
}
