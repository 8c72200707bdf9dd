import { requestFullReconcile, readCursor, writeCursor, fullScope } from './cursors.ts';
import type { LinkedEntity } from '../sync/policy.ts';
import { dvEntity, type SweepRun, type SweepSettings } from './run.ts';

// Full reconciliation: every linked pair of an entity re-read and merged, requested by an
// operator (FULL), a back-fill of a newly mapped field, or a lost cursor (cursors.ts).

// Marketo answers leadchanges/deletedleads in pages of at most 300; the engine reads and writes
// persons in batches of 300 too: what a reconciled page of links costs in Marketo calls.
const MARKETO_BATCH = 300;

/** One run's full reconciliation: `requestBackfills()` first, `reconcile(entity)` last. */
export function fullReconciliation(s: SweepSettings, run: SweepRun) {
  const { prisma, options, pageSize } = s;
  const { mappings } = options;
  const { runId, counts, notes, checkAbort, spendMarketo } = run;

  /** Mappings whose back-fill was requested: every link of their entity is reconciled. */
  async function requestBackfills(): Promise<void> {
    const rows = await prisma.fieldMapping.findMany({
      where: { backfillRequestedAt: { not: null } },
      select: { entity: true, canonicalField: true },
    });
    for (const entity of new Set(rows.map((r) => r.entity))) {
      mappings.invalidate(entity);
      await requestFullReconcile(prisma, entity);
      const fields = rows.filter((r) => r.entity === entity).map((r) => r.canonicalField);
      notes.push(`${dvEntity(entity)}: back-fill of ${fields.join(', ')} requested: every linked ${dvEntity(entity)} is reconciled`);
    }
  }

  /**
   * Every link of `entity`, page by page from the stored position, becomes a RESYNC event; the
   * position is stored after each page, so a stopped reconciliation continues where it stopped.
   */
  async function reconcile(entity: LinkedEntity): Promise<void> {
    const scope = fullScope(entity);
    const cursor = await readCursor(prisma, 'DYNAMICS', scope);
    if (!cursor?.token) return;
    let after = cursor.token;
    const requestedAt = cursor.watermark;
    const page = pageSize * 5;
    for (;;) {
      checkAbort();
      // the engine reads these persons (and may write them) in batches of 300
      await spendMarketo(2 * Math.ceil(page / MARKETO_BATCH), `reconciling up to ${page} more linked ${dvEntity(entity)}s`);
      // Keyset pagination inside the database: a page of links becomes a page of inbox events
      // in one statement, so memory does not grow with the table and no row crosses the wire.
      // A link made after the reconciliation was requested was synced from fresh reads of both
      // sides when it was made (the initial sync links a whole org during its first sweep): it
      // is passed over, not re-read.
      const [result] = await prisma.$queryRaw<{ links: number; enqueued: number; fresh: number; last: string | null }[]>`
        WITH page AS (
          SELECT id, "marketoId", "dynamicsId", "createdAt" FROM sync_link
           WHERE "dynamicsEntity" = ${entity}::"DynamicsEntity" AND id > ${after}::uuid AND status <> 'DELETED_IN_DYNAMICS'
           ORDER BY id
           LIMIT ${page}
        ), queued AS (
          INSERT INTO change_event (id, source, origin, operation, "marketoId", "dynamicsEntity", "dynamicsId", payload,
                                    "dedupeKey", "receivedAt", "nextAttemptAt", "updatedAt")
          SELECT gen_random_uuid(), 'OPERATOR', 'SWEEP', 'RESYNC', "marketoId", ${entity}::"DynamicsEntity", "dynamicsId",
                 jsonb_build_object('runId', ${runId}::text, 'reconcile', true),
                 'sweep:full:' || ${runId}::text || ':' || id::text, clock_timestamp(), clock_timestamp(), now()
            FROM page
           WHERE ${requestedAt}::timestamptz IS NULL OR "createdAt" <= ${requestedAt}::timestamptz
          ON CONFLICT ("dedupeKey") DO NOTHING
          RETURNING 1
        )
        SELECT (SELECT count(*) FROM page)::int AS links, (SELECT count(*) FROM queued)::int AS enqueued,
               (SELECT count(*) FROM page WHERE "createdAt" > ${requestedAt}::timestamptz)::int AS fresh,
               (SELECT id::text FROM page ORDER BY id DESC LIMIT 1) AS last`;
      const links = result?.links ?? 0;
      if (links === 0) break;
      counts.eventsEnqueued += result?.enqueued ?? 0;
      counts.duplicates += links - (result?.enqueued ?? 0) - (result?.fresh ?? 0);
      counts.linksReconciled += links - (result?.fresh ?? 0);
      options.notify();
      after = result!.last!;
      await writeCursor(prisma, 'DYNAMICS', scope, { token: after });
      if (links < page) break;
    }
    await writeCursor(prisma, 'DYNAMICS', scope, { token: null });
    // back-fills requested before this reconciliation began are done; later ones start another
    if (cursor.watermark) {
      await prisma.fieldMapping.updateMany({
        where: { entity, backfillRequestedAt: { not: null, lte: cursor.watermark } },
        data: { backfillRequestedAt: null },
      });
    }
    const again = await prisma.fieldMapping.count({ where: { entity, backfillRequestedAt: { not: null } } });
    if (again > 0) await requestFullReconcile(prisma, entity);
  }
  return { requestBackfills, reconcile };
}
