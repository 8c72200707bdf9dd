import { randomUUID } from 'node:crypto';
import type { Database, Db } from '../db/database.ts';
import { Prisma, type ChangeEventStatus, type ChangeOrigin, type ChangeSource, type DynamicsEntity } from '../db/generated/client.ts';
import { latencyBucketSql, NO_LATENCY } from './latency-histogram.ts';
import { retryDelayMs, type RetryPolicy } from './retry.ts';

// The inbox: every accepted webhook, sweep discovery and operator request is a ChangeEvent row
// before anyone answers 2xx. Workers on any replica claim batches with FOR UPDATE SKIP LOCKED and
// a lease (visibility timeout): a worker that dies leaves its events to be claimed again once the
// lease expires. All times are the database's clock, so replicas never disagree about them.

export type { ChangeEventStatus, ChangeOrigin, ChangeSource };

export interface NewChangeEvent {
  source: ChangeSource;
  origin: ChangeOrigin;
  /** CREATE | UPDATE | DELETE | SYNC_PERSON | RESYNC */
  operation: string;
  marketoId?: number | undefined;
  dynamicsEntity?: DynamicsEntity | undefined;
  dynamicsId?: string | undefined;
  payload?: unknown;
  /** the same key twice is the same event: the second is answered as a duplicate */
  dedupeKey: string;
}

export interface ClaimedChangeEvent {
  id: string;
  source: ChangeSource;
  origin: ChangeOrigin;
  operation: string;
  marketoId: number | null;
  dynamicsEntity: DynamicsEntity | null;
  dynamicsId: string | null;
  linkId: string | null;
  payload: unknown;
  dedupeKey: string;
  attempts: number;
  receivedAt: Date;
}

/** A duplicate names the event already stored, and whether it still waits to be claimed. */
export type EnqueueResult = { status: 'queued'; id: string } | { status: 'duplicate'; id: string; pending: boolean };

/**
 * Which status an event may move to from which: the one table the worker, the sweep and the
 * operator API all go through. Each write below only matches rows in an allowed `from` status.
 */
export const changeEventTransitions = {
  PENDING: ['PROCESSING'],
  FAILED: ['PROCESSING'],
  // PROCESSING -> PROCESSING is a re-claim after the lease expired; -> PENDING is a release on shutdown
  PROCESSING: ['DONE', 'FAILED', 'DEAD', 'PENDING', 'PROCESSING'],
  DEAD: ['PENDING'],
  DONE: [],
} as const satisfies Record<ChangeEventStatus, readonly ChangeEventStatus[]>;

export function allowedFrom(to: ChangeEventStatus): ChangeEventStatus[] {
  return (Object.keys(changeEventTransitions) as ChangeEventStatus[]).filter((from) =>
    (changeEventTransitions[from] as readonly ChangeEventStatus[]).includes(to),
  );
}

const enqueueSql = `
  INSERT INTO change_event (id, source, origin, operation, "marketoId", "dynamicsEntity", "dynamicsId",
                            payload, "dedupeKey", "receivedAt", "nextAttemptAt", "updatedAt")
  VALUES ($1::uuid, $2::"ChangeSource", $3::"ChangeOrigin", $4, $5::int, $6::"DynamicsEntity", $7::uuid,
          $8::jsonb, $9, clock_timestamp(), clock_timestamp(), now())
  ON CONFLICT ("dedupeKey") DO NOTHING
  RETURNING id::text`;

const isDatabase = (db: Db | Database): db is Database => 'engine' in db && 'prisma' in db;

/** The columns an event is stored with, absent values as NULL and no payload as {}: every enqueue writes these. */
function storedEvent(e: NewChangeEvent) {
  return {
    source: e.source,
    origin: e.origin,
    operation: e.operation,
    marketoId: e.marketoId ?? null,
    dynamicsEntity: e.dynamicsEntity ?? null,
    dynamicsId: e.dynamicsId ?? null,
    payload: (e.payload ?? {}) as Prisma.InputJsonValue,
    dedupeKey: e.dedupeKey,
  };
}

/**
 * Stores an event unless its dedupe key is known. Given the Database (intake), it runs on the
 * driver directly: this is the one statement a webhook answer waits for.
 */
export async function enqueue(db: Db | Database, event: NewChangeEvent): Promise<EnqueueResult> {
  const row = storedEvent(event);
  const values = [randomUUID(), row.source, row.origin, row.operation, row.marketoId, row.dynamicsEntity, row.dynamicsId, JSON.stringify(row.payload), row.dedupeKey];
  const run = <T>(text: string, params: unknown[]) => (isDatabase(db) ? db.query<T>(text, params) : db.$queryRawUnsafe<T[]>(text, ...params));
  const inserted = await run<{ id: string }>(enqueueSql, values);
  if (inserted[0]) return { status: 'queued', id: inserted[0].id };
  const existing = await run<{ id: string; status: ChangeEventStatus }>(`SELECT id::text, status::text FROM change_event WHERE "dedupeKey" = $1`, [event.dedupeKey]);
  if (!existing[0]) throw new Error(`change event ${event.dedupeKey} conflicted but cannot be found`);
  return { status: 'duplicate', id: existing[0].id, pending: existing[0].status === 'PENDING' };
}

// Many webhooks' events in one statement, each row stamped in order (clock_timestamp per row) so
// claims still come out in arrival order; the rows travel as one JSON parameter.
const enqueueBatchSql = `
  INSERT INTO change_event (id, source, origin, operation, "marketoId", "dynamicsEntity", "dynamicsId",
                            payload, "dedupeKey", "receivedAt", "nextAttemptAt", "updatedAt")
  SELECT e.id, e.source::"ChangeSource", e.origin::"ChangeOrigin", e.operation, e."marketoId",
         e."dynamicsEntity"::"DynamicsEntity", e."dynamicsId", e.payload, e."dedupeKey", clock_timestamp(), clock_timestamp(), now()
  FROM jsonb_to_recordset($1::jsonb) AS e(id uuid, source text, origin text, operation text, "marketoId" int,
                                          "dynamicsEntity" text, "dynamicsId" uuid, payload jsonb, "dedupeKey" text)
  ON CONFLICT ("dedupeKey") DO NOTHING
  RETURNING id::text, "dedupeKey"`;

/**
 * Stores many events in one statement (webhooks that arrived together); one result per event, in
 * order. Of events sharing a dedupe key the first is queued and the others are its duplicates.
 */
export async function enqueueBatch(db: Database, events: readonly NewChangeEvent[]): Promise<EnqueueResult[]> {
  if (events.length === 0) return [];
  const rows = events.map((e) => ({ id: randomUUID(), ...storedEvent(e) }));
  const inserted = new Map((await db.query<{ id: string; dedupeKey: string }>(enqueueBatchSql, [JSON.stringify(rows)])).map((r) => [r.dedupeKey, r.id]));
  const known = new Map<string, { id: string; pending: boolean }>();
  const missing = [...new Set(events.map((e) => e.dedupeKey).filter((key) => !inserted.has(key)))];
  if (missing.length > 0) {
    const existing = await db.query<{ id: string; dedupeKey: string; status: ChangeEventStatus }>(
      `SELECT id::text, "dedupeKey", status::text FROM change_event WHERE "dedupeKey" IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      [JSON.stringify(missing)],
    );
    for (const row of existing) known.set(row.dedupeKey, { id: row.id, pending: row.status === 'PENDING' });
  }
  return events.map((event): EnqueueResult => {
    const id = inserted.get(event.dedupeKey);
    if (id !== undefined) {
      // the first with this key is the one stored; any later one in the batch repeats it
      inserted.delete(event.dedupeKey);
      known.set(event.dedupeKey, { id, pending: true });
      return { status: 'queued', id };
    }
    const existing = known.get(event.dedupeKey);
    if (!existing) throw new Error(`change event ${event.dedupeKey} conflicted but cannot be found`);
    return { status: 'duplicate', ...existing };
  });
}

/** Many events in one statement (the sweep's pages); known dedupe keys are skipped, not errors. */
export async function enqueueMany(db: Db, events: readonly NewChangeEvent[]): Promise<{ queued: number; duplicates: number }> {
  if (events.length === 0) return { queued: 0, duplicates: 0 };
  const { count } = await db.changeEvent.createMany({ data: events.map(storedEvent), skipDuplicates: true });
  return { queued: count, duplicates: events.length - count };
}

export interface ClaimOptions {
  /** who holds the lease: replica id + worker */
  owner: string;
  batchSize: number;
  leaseMs: number;
  /** an event whose lease expired this many times is dead: its worker keeps crashing on it */
  maxAttempts: number;
}

/**
 * The statuses a claim takes, written into its statement as literals: change_event_claim_idx
 * (migration inbox_partial_indexes) holds exactly these, and PostgreSQL only reads a partial index for a
 * condition it can see implies the index's own.
 */
export const CLAIMABLE_STATUSES = allowedFrom('PROCESSING');
const claimableSql = Prisma.raw(CLAIMABLE_STATUSES.map((status) => `'${status}'`).join(', '));

/** The claim itself: the earliest due events this owner may take, leased to it, in arrival order. */
export function claimStatement(options: Pick<ClaimOptions, 'owner' | 'batchSize' | 'leaseMs'>): Prisma.Sql {
  return Prisma.sql`
    UPDATE change_event e
       SET status = 'PROCESSING', "leaseOwner" = ${options.owner}, attempts = e.attempts + 1,
           "nextAttemptAt" = now() + make_interval(secs => ${options.leaseMs / 1000}::float8), "updatedAt" = now()
      FROM (SELECT id FROM change_event
             WHERE status IN (${claimableSql}) AND "nextAttemptAt" <= now()
             ORDER BY "nextAttemptAt", "receivedAt"
             LIMIT ${options.batchSize}
             FOR UPDATE SKIP LOCKED) claimable
     WHERE e.id = claimable.id
    RETURNING e.id::text AS id, e.source, e.origin, e.operation, e."marketoId", e."dynamicsEntity",
              e."dynamicsId"::text AS "dynamicsId", e."linkId"::text AS "linkId", e.payload, e."dedupeKey",
              e.attempts, e."receivedAt"`;
}

export async function claim(db: Db, options: ClaimOptions): Promise<ClaimedChangeEvent[]> {
  await db.$executeRaw`
    UPDATE change_event
       SET status = 'DEAD', "leaseOwner" = NULL, "completedAt" = now(), "updatedAt" = now(),
           "lastError" = concat('lease expired after attempt ', attempts, ' of ', ${options.maxAttempts}::int,
                                ' (worker crashed or hung)', coalesce('; before that: ' || "lastError", ''))
     WHERE status = 'PROCESSING' AND "nextAttemptAt" <= now() AND attempts >= ${options.maxAttempts}`;
  return db.$queryRaw<ClaimedChangeEvent[]>(claimStatement(options));
}

// The bucket of a webhook's latency, computed in the statement that completes it
const completedLatencyBucket = Prisma.raw(latencyBucketSql('d."completedAt"', 'd."receivedAt"'));

/**
 * Marks many claimed events done in one statement; returns how many this owner still held. The same
 * statement adds them to throughput_minute (per minute and source, webhooks by latency bucket), so
 * the console's throughput never scans events; tallies are taken in key order, so concurrent
 * replicas completing in the same minute wait for each other instead of deadlocking.
 */
export async function completeMany(db: Db, done: readonly { id: string; linkId?: string | null }[], owner: string): Promise<number> {
  if (done.length === 0) return 0;
  const [row] = await db.$queryRaw<{ count: number }[]>`
    WITH d AS (
      UPDATE change_event e
         SET status = 'DONE', "leaseOwner" = NULL, "completedAt" = now(), "updatedAt" = now(),
             "linkId" = coalesce(d.link_id, e."linkId")
        FROM unnest(${done.map((d) => d.id)}::uuid[], ${done.map((d) => d.linkId ?? null)}::uuid[]) AS d(id, link_id)
       -- status as text: compared as the enum, the planner may read the open-events index for it,
       -- whose entries for every earlier PROCESSING version pile up during a burst (17 ms a call
       -- measured); this way it finds each event by its key
       WHERE e.id = d.id AND e.status::text = 'PROCESSING' AND e."leaseOwner" = ${owner}
      RETURNING e.source, e.origin, e."receivedAt", e."completedAt"
    ), tallied AS (
      INSERT INTO throughput_minute (minute, source, "latencyBucket", events)
      SELECT date_trunc('minute', d."completedAt"), d.source,
             CASE WHEN d.origin = 'WEBHOOK' THEN ${completedLatencyBucket} ELSE ${NO_LATENCY}::smallint END, count(*)::int
        FROM d GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
      ON CONFLICT (minute, source, "latencyBucket") DO UPDATE SET events = throughput_minute.events + excluded.events
    )
    SELECT count(*)::int AS count FROM d`;
  return row?.count ?? 0;
}

/** Marks one claimed event done. False when the lease was lost (expired and re-claimed elsewhere). */
export async function complete(db: Db, id: string, owner: string, linkId?: string): Promise<boolean> {
  return (await completeMany(db, [{ id, linkId: linkId ?? null }], owner)) === 1;
}

export interface FailOptions {
  maxAttempts: number;
  /** the vendor's Retry-After, if it gave one */
  retryAfterMs?: number | undefined;
  /** no retry can help (a bug, a permanent refusal): dead now */
  permanent?: boolean;
  policy?: RetryPolicy;
  random?: () => number;
}

export type FailResult = { status: 'FAILED'; retryInMs: number } | { status: 'DEAD' } | { status: 'LEASE_LOST' };

/** Records a failed attempt: retried later with backoff, or dead after maxAttempts, with the reason. */
export async function fail(db: Db, event: { id: string; attempts: number }, owner: string, reason: string, options: FailOptions): Promise<FailResult> {
  if (options.permanent || event.attempts >= options.maxAttempts) {
    const count = await db.$executeRaw`
      UPDATE change_event
         SET status = 'DEAD', "leaseOwner" = NULL, "lastError" = ${reason}, "completedAt" = now(), "updatedAt" = now()
       WHERE id = ${event.id}::uuid AND status = 'PROCESSING' AND "leaseOwner" = ${owner}`;
    return count === 1 ? { status: 'DEAD' } : { status: 'LEASE_LOST' };
  }
  const retryInMs = retryDelayMs(event.attempts, {
    retryAfterMs: options.retryAfterMs,
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.random ? { random: options.random } : {}),
  });
  const count = await db.$executeRaw`
    UPDATE change_event
       SET status = 'FAILED', "leaseOwner" = NULL, "lastError" = ${reason},
           "nextAttemptAt" = now() + make_interval(secs => ${retryInMs / 1000}::float8), "updatedAt" = now()
     WHERE id = ${event.id}::uuid AND status = 'PROCESSING' AND "leaseOwner" = ${owner}`;
  return count === 1 ? { status: 'FAILED', retryInMs } : { status: 'LEASE_LOST' };
}

/**
 * Gives claimed events back untouched (graceful shutdown, or the record is busy elsewhere): the
 * attempt does not count. `delayMs` keeps them out of the next claims for a moment.
 */
export async function release(db: Db, ids: string[], owner: string, delayMs = 0): Promise<number> {
  if (ids.length === 0) return 0;
  return db.$executeRaw`
    UPDATE change_event
       SET status = 'PENDING', "leaseOwner" = NULL, attempts = greatest(attempts - 1, 0),
           "nextAttemptAt" = now() + make_interval(secs => ${delayMs / 1000}::float8), "updatedAt" = now()
     WHERE id = ANY(${`{${ids.join(',')}}`}::uuid[]) AND status = 'PROCESSING' AND "leaseOwner" = ${owner}`;
}

/**
 * Extends the leases of the events this replica's worker has in hand (the heartbeat, sync/leases.ts):
 * only those, so an event whose batch was lost in this process (its completion failed) expires and
 * is claimed again instead of being kept alive forever. Rows another statement is completing or
 * releasing right now are skipped, not waited for: they are leaving PROCESSING anyway, and waiting
 * on them while holding others is how a heartbeat and a completion deadlock.
 */
export async function renewEventLeases(db: Db, owner: string, leaseMs: number, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return db.$executeRaw`
    UPDATE change_event e SET "nextAttemptAt" = now() + make_interval(secs => ${leaseMs / 1000}::float8)
      FROM (SELECT id FROM change_event
             WHERE id = ANY(${[...ids]}::uuid[]) AND status = 'PROCESSING' AND "leaseOwner" = ${owner} AND "nextAttemptAt" >= now()
             ORDER BY id
             FOR UPDATE SKIP LOCKED) held
     WHERE e.id = held.id`;
}

/**
 * Makes every claimed event claimable now (start-up on the embedded database, which one process
 * owns by construction: a PROCESSING event there was left by a run that died). The attempt still
 * counts, so an event that kills the process every time is dead-lettered in the end.
 */
export async function reclaimAbandoned(db: Db): Promise<number> {
  return db.$executeRaw`
    UPDATE change_event SET "nextAttemptAt" = now(), "updatedAt" = now()
     WHERE status = 'PROCESSING'`;
}

/** An operator's replay of a dead event: a fresh start with its attempts reset. */
export async function replay(db: Db, id: string): Promise<boolean> {
  const count = await db.$executeRaw`
    UPDATE change_event
       SET status = 'PENDING', attempts = 0, "nextAttemptAt" = now(), "completedAt" = NULL, "updatedAt" = now()
     WHERE id = ${id}::uuid AND status = 'DEAD'`;
  return count === 1;
}

export interface InboxStats {
  pending: number;
  processing: number;
  failed: number;
  dead: number;
  oldestPendingAgeMs: number | null;
}

export async function inboxStats(db: Db): Promise<InboxStats> {
  const rows = await db.$queryRaw<{ status: ChangeEventStatus; count: number; oldest_ms: number | null }[]>`
    SELECT status, count(*)::int AS count,
           (extract(epoch FROM now() - min("receivedAt")) * 1000)::float8 AS oldest_ms
      FROM change_event
     WHERE status <> 'DONE'
     GROUP BY status`;
  const count = (status: ChangeEventStatus) => rows.find((row) => row.status === status)?.count ?? 0;
  const waiting = rows.filter((row) => row.status !== 'DEAD' && row.oldest_ms !== null).map((row) => row.oldest_ms as number);
  return {
    pending: count('PENDING'),
    processing: count('PROCESSING'),
    failed: count('FAILED'),
    dead: count('DEAD'),
    oldestPendingAgeMs: waiting.length ? Math.max(...waiting) : null,
  };
}
