import type { Db } from '../db/database.ts';

// Retention: what is old enough to go, deleted in small batches. Each batch is one statement of
// its own (DELETE ... WHERE id IN (SELECT id ... LIMIT n)), so no transaction is held, no table is
// locked, intake and the engine interleave between batches, and a crash half-way leaves only fully
// deleted batches: the next pass carries on. DEAD change events are never pruned (an operator
// replays or discards them), nor are events still to do, nor a sweep that is still running, nor a
// journal entry (a PENDING activity) that is not settled yet: it is the write protocol's record of
// a write that may still land, whatever its age. A DEAD event's payload (a webhook body: personal
// data) is redacted once it is old enough; the event stays replayable, since the engine reads both
// systems afresh and keeps from the payload only what a replay needs (Sync Person's syncAs and assignTo).

export interface RetentionPolicy {
  /** DONE change events, by completedAt */
  doneEventDays: number;
  /** activity log entries, by occurredAt */
  activityDays: number;
  /** finished sweeps, by finishedAt */
  syncRunDays: number;
  /** audit entries, by at */
  auditDays: number;
  /** rows per DELETE statement */
  batchSize: number;
  /** DEAD change events' payloads, by updatedAt (when they died) */
  deadPayloadDays: number;
}

export const defaultRetention: RetentionPolicy = { doneEventDays: 14, activityDays: 400, syncRunDays: 90, auditDays: 400, batchSize: 5_000, deadPayloadDays: 30 };

export const PRUNED_TABLES = ['change_event', 'activity', 'sync_run', 'audit_entry', 'throughput_minute', 'create_intent'] as const;
export type PrunedTable = (typeof PRUNED_TABLES)[number];

export interface PruneResult {
  at: Date;
  removed: Record<PrunedTable, number>;
  batches: number;
  /** DEAD change events whose payload was redacted */
  redactedPayloads: number;
  /** true when it stopped before finishing (lease lost, shutdown); the next pass continues */
  interrupted: boolean;
  durationMs: number;
}

const DAY_MS = 86_400_000;

/** The marker a redacted payload carries; what a replay needs of the payload is kept beside it. */
export const REDACTED = 'redactedAt';
const redactStatement = `UPDATE change_event SET payload = jsonb_strip_nulls(jsonb_build_object(
      '${REDACTED}', to_jsonb($3::timestamptz), 'syncAs', payload->'syncAs', 'assignTo', payload->'assignTo', 'runId', payload->'runId'))
    WHERE id IN (SELECT id FROM change_event WHERE status = 'DEAD' AND "updatedAt" < $1 AND NOT (payload ? '${REDACTED}') LIMIT $2)`;

/** One table's rule: which rows are due, given the cutoff ($1) and the batch size ($2). */
const batchStatements: Record<PrunedTable, string> = {
  change_event: `DELETE FROM change_event WHERE id IN (
      SELECT id FROM change_event WHERE status = 'DONE' AND "completedAt" < $1 LIMIT $2)`,
  // an unsettled journal entry (PENDING) is kept whatever its age: the stale-write check needs it
  activity: `DELETE FROM activity WHERE id IN (
      SELECT id FROM activity WHERE "occurredAt" < $1 AND state <> 'PENDING' LIMIT $2)`,
  sync_run: `DELETE FROM sync_run WHERE id IN (
      SELECT id FROM sync_run WHERE "finishedAt" IS NOT NULL AND status <> 'RUNNING' AND "finishedAt" < $1 LIMIT $2)`,
  audit_entry: `DELETE FROM audit_entry WHERE id IN (
      SELECT id FROM audit_entry WHERE at < $1 LIMIT $2)`,
  // the throughput tallies of the done events: kept as long as those events
  throughput_minute: `DELETE FROM throughput_minute WHERE (minute, source, "latencyBucket") IN (
      SELECT minute, source, "latencyBucket" FROM throughput_minute WHERE minute < $1 LIMIT $2)`,
  // settled creates (their link holds what they made), kept as long as done events; open ones are work to finish
  create_intent: `DELETE FROM create_intent WHERE id IN (
      SELECT id FROM create_intent WHERE state <> 'OPEN' AND "settledAt" < $1 LIMIT $2)`,
};

const retentionDays = (policy: RetentionPolicy, table: PrunedTable) =>
  ({ change_event: policy.doneEventDays, activity: policy.activityDays, sync_run: policy.syncRunDays, audit_entry: policy.auditDays, throughput_minute: policy.doneEventDays, create_intent: policy.doneEventDays })[table];

/** The instant before which a table's rows are due, for a pass that runs at `now`. */
export function cutoffs(policy: RetentionPolicy, now: Date): Record<PrunedTable, Date> {
  return Object.fromEntries(PRUNED_TABLES.map((table) => [table, new Date(now.getTime() - retentionDays(policy, table) * DAY_MS)])) as Record<PrunedTable, Date>;
}

export interface PruneOptions {
  db: Db;
  policy: RetentionPolicy;
  /** the pass's clock: cutoffs are computed from it (tests inject one) */
  now: () => Date;
  /** aborted: stop after the current batch (lease lost, shutdown) */
  signal?: AbortSignal;
  /** called between batches; lets the event loop and other statements in */
  pause?: () => Promise<void>;
}

const yieldToOthers = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function pruneOnce(options: PruneOptions): Promise<PruneResult> {
  const { db, policy, signal } = options;
  const pause = options.pause ?? yieldToOthers;
  const at = options.now();
  const started = performance.now();
  const due = cutoffs(policy, at);
  const removed = { change_event: 0, activity: 0, sync_run: 0, audit_entry: 0, throughput_minute: 0, create_intent: 0 } satisfies Record<PrunedTable, number>;
  let batches = 0;
  let redactedPayloads = 0;
  // events first: their activities' changeEventId is set to null, then old activities go too
  for (const table of PRUNED_TABLES) {
    for (;;) {
      if (signal?.aborted) return { at, removed, redactedPayloads, batches, interrupted: true, durationMs: performance.now() - started };
      const count = await db.$executeRawUnsafe(batchStatements[table], due[table], policy.batchSize);
      batches += 1;
      removed[table] += count;
      if (count < policy.batchSize) break;
      await pause();
    }
  }
  const deadCutoff = new Date(at.getTime() - policy.deadPayloadDays * DAY_MS);
  for (;;) {
    if (signal?.aborted) return { at, removed, redactedPayloads, batches, interrupted: true, durationMs: performance.now() - started };
    const count = await db.$executeRawUnsafe(redactStatement, deadCutoff, policy.batchSize, at);
    batches += 1;
    redactedPayloads += count;
    if (count < policy.batchSize) break;
    await pause();
  }
  return { at, removed, redactedPayloads, batches, interrupted: false, durationMs: performance.now() - started };
}
