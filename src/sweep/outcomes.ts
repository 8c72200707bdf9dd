import type { Database } from '../db/database.ts';
import type { SweepCounts } from './types.ts';

/** Waits (bounded) for the engine to process this run's events and counts what they did. */
export async function countOutcomes(prisma: Database['prisma'], runId: string, since: Date, counts: SweepCounts, waitMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + waitMs;
  let pending = 0;
  for (;;) {
    const [row] = await prisma.$queryRaw<{ pending: number }[]>`
      SELECT count(*)::int AS pending FROM change_event
       WHERE "receivedAt" >= ${since} AND origin = 'SWEEP' AND payload->>'runId' = ${runId}
         AND status IN ('PENDING', 'PROCESSING', 'FAILED')`;
    pending = row?.pending ?? 0;
    if (pending === 0 || Date.now() >= deadline || signal?.aborted) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const rows = await prisma.$queryRaw<{ type: string; count: number }[]>`
    SELECT a.type::text AS type, count(*)::int AS count
      FROM activity a JOIN change_event e ON e.id = a."changeEventId"
     WHERE e."receivedAt" >= ${since} AND e.origin = 'SWEEP' AND e.payload->>'runId' = ${runId}
     GROUP BY a.type`;
  const of = (...types: string[]) => rows.filter((r) => types.includes(r.type)).reduce((sum, r) => sum + r.count, 0);
  counts.created = of('CREATED_IN_MARKETO', 'CREATED_IN_DYNAMICS');
  counts.updated = of('UPDATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS');
  counts.collisions = of('COLLISION_RESOLVED');
  counts.rejections = of('VALIDATION_REJECTED');
  counts.failures = of('SYNC_FAILED', 'EVENT_DEAD');
  counts.pendingAfterWait = pending;
}
