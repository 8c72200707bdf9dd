import type { Database } from '../db/database.ts';
import { Prisma } from '../db/generated/client.ts';
import { activityRow, type ActivityEntry, type ActivityField } from './activities.ts';
import type { MarketoWriteRecord } from './overwritten.ts';
import type { PendingEntry } from './plan.ts';

// Step 2 of the write protocol: a plan's activity entries are stored, PENDING, before any vendor
// write. A collision's loser is therefore never only in memory: if the process dies between the
// writes and the commit, the next sync of the link finds the entry and settles it (plan.ts
// settlePending). Each statement carries the entries of every sync in flight (engine.ts
// coalesces), so the journal costs one statement per batch, not one per person.

/**
 * The entries the log shows: a SUPERSEDED entry was a plan that never happened (a 412, a refusal,
 * a crash before the write). Every list, loader and the lineage read through this predicate.
 */
export const shownActivities = { state: { not: 'SUPERSEDED' } } as const satisfies Prisma.ActivityWhereInput;
/** The same predicate for raw SQL over `activity a`. */
export const shownActivitiesSql = Prisma.sql`a.state <> 'SUPERSEDED'`;

const columns = `type text, "linkId" uuid, "marketoId" int, "dynamicsEntity" text, "dynamicsId" uuid, fields jsonb, message text, "changeEventId" uuid, "plannedRevision" int, ord int`;

/** A plan's entry as journaled: a write entry carries the link revision the plan was made from. */
export type JournalEntry = ActivityEntry & { plannedRevision?: number | null };

/**
 * Stores entries as PENDING; returns their ids in the order given. The ids come from one sequence
 * and are drawn in the order the SELECT produces rows (ORDER BY ord), so sorting the returned ids
 * restores the input order.
 */
export async function journal(db: Database, entries: readonly JournalEntry[]): Promise<string[]> {
  if (entries.length === 0) return [];
  const rows = entries.map((e, ord) => ({ ...activityRow(e), plannedRevision: e.plannedRevision ?? null, ord }));
  const inserted = await db.query<{ id: string }>(
    `INSERT INTO activity (type, "linkId", "marketoId", "dynamicsEntity", "dynamicsId", fields, message, "changeEventId", "plannedRevision", state)
     SELECT e.type::"ActivityType", e."linkId", e."marketoId", e."dynamicsEntity"::"DynamicsEntity", e."dynamicsId", e.fields, e.message, e."changeEventId", e."plannedRevision", 'PENDING'
       FROM jsonb_to_recordset($1::jsonb) AS e(${columns})
      ORDER BY e.ord
     RETURNING id::text`,
    [JSON.stringify(rows)],
  );
  return inserted.map((r) => BigInt(r.id)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map(String);
}

/**
 * The entries earlier attempts journaled for these links and never committed: those still PENDING,
 * and the write entries still in doubt (settled, but never committed by their own attempt: stale.ts).
 * Oldest first, by the numeric id (the text `id` of the select list would sort 10 before 9), so a
 * later write of a field comes after an earlier one.
 */
export async function pendingEntries(db: Database, linkIds: readonly string[]): Promise<Map<string, PendingEntry[]>> {
  const byLink = new Map<string, PendingEntry[]>();
  if (linkIds.length === 0) return byLink;
  const rows = await db.query<{
    id: string;
    linkId: string;
    type: PendingEntry['type'];
    fields: ActivityField[];
    state: string;
    plannedRevision: number | null;
    at: string;
    dynamicsEchoes: { at: string; columns: Record<string, unknown> }[] | null;
  }>(
    `SELECT id::text, "linkId"::text AS "linkId", type, fields, state, "plannedRevision", (extract(epoch from "occurredAt") * 1000)::float8::text AS at, "dynamicsEchoes"
       FROM activity WHERE "linkId" = ANY($1::uuid[]) AND (state = 'PENDING' OR "plannedRevision" IS NOT NULL) ORDER BY activity.id`,
    [linkIds],
  );
  for (const row of rows) {
    const entry: PendingEntry = {
      id: row.id,
      type: row.type,
      fields: row.fields,
      pending: row.state === 'PENDING',
      plannedRevision: row.plannedRevision,
      at: Number(row.at),
      dynamicsEchoes: row.dynamicsEchoes ?? [],
    };
    byLink.set(row.linkId, [...(byLink.get(row.linkId) ?? []), entry]);
  }
  return byLink;
}

/**
 * Marks journaled entries final or superseded (a settled earlier attempt). `retire`: entries no
 * longer in doubt (a write seen on its side has landed and cannot land again; stale.ts), whatever
 * their state.
 */
export async function settle(db: Database, outcome: { final: readonly string[]; superseded: readonly string[]; retire?: readonly string[] }): Promise<void> {
  const retire = outcome.retire ?? [];
  if (outcome.final.length === 0 && outcome.superseded.length === 0 && retire.length === 0) return;
  await db.query(
    `UPDATE activity a SET state = CASE WHEN a.state = 'PENDING' AND s.state <> 'KEEP' THEN s.state::"ActivityState" ELSE a.state END,
            "plannedRevision" = CASE WHEN s.retire THEN NULL ELSE a."plannedRevision" END,
            "dynamicsEchoes" = CASE WHEN s.retire THEN NULL ELSE a."dynamicsEchoes" END
       FROM (SELECT id, (array_agg(state ORDER BY state = 'KEEP'))[1] AS state, bool_or(retire) AS retire
               FROM unnest($1::bigint[], $2::text[], $3::bool[]) AS u(id, state, retire) GROUP BY id) s
      WHERE a.id = s.id`,
    [
      [...outcome.final, ...outcome.superseded, ...retire],
      [...outcome.final.map(() => 'FINAL'), ...outcome.superseded.map(() => 'SUPERSEDED'), ...retire.map(() => 'KEEP')],
      [...outcome.final.map(() => false), ...outcome.superseded.map(() => false), ...retire.map(() => true)],
    ],
  );
}

/**
 * Per field, the last committed write of it to Marketo on this link: what its plan read there, wrote,
 * and had agreed before (overwritten.ts). Only asked when the sweep found an edit a write overwrote.
 */
export async function lastMarketoWrites(db: Database, linkId: string, fields: readonly string[]): Promise<Map<string, MarketoWriteRecord>> {
  const wanted = new Set(fields);
  const found = new Map<string, MarketoWriteRecord>();
  if (wanted.size === 0) return found;
  const rows = await db.query<{ fields: ActivityField[] }>(
    `SELECT fields FROM activity
      WHERE "linkId" = $1::uuid AND state = 'FINAL' AND type IN ('UPDATED_IN_MARKETO', 'COLLISION_RESOLVED')
        AND fields @> '[{"side": "MARKETO"}]'::jsonb
      ORDER BY id DESC LIMIT 100`,
    [linkId],
  );
  for (const row of rows) {
    for (const f of row.fields) {
      if (f.side !== 'MARKETO' || !wanted.has(f.field) || found.has(f.field)) continue;
      found.set(f.field, { oldValue: f.oldValue ?? null, newValue: f.newValue ?? null, baseValue: f.baseValue ?? null });
    }
  }
  return found;
}

/**
 * Keeps the columns an Update webhook of the sync user's own write carried on the record's Dynamics
 * write entries still in doubt (a lost answer's only witness: pair.ts). Most echoes come after
 * their write committed and match no entry: one indexed look-up each.
 */
export async function recordDynamicsEcho(db: Database, dynamicsId: string, echo: { at: string; columns: Record<string, unknown> }): Promise<void> {
  await db.query(
    `UPDATE activity SET "dynamicsEchoes" = COALESCE("dynamicsEchoes", '[]'::jsonb) || jsonb_build_array($2::jsonb)
      WHERE "dynamicsId" = $1::uuid AND (state = 'PENDING' OR "plannedRevision" IS NOT NULL)
        AND type IN ('UPDATED_IN_DYNAMICS', 'COLLISION_RESOLVED', 'STALE_WRITE_UNDONE') AND fields @> '[{"side": "DYNAMICS"}]'::jsonb`,
    [dynamicsId, JSON.stringify(echo)],
  );
}
