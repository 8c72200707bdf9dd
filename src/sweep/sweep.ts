import type { Prisma } from '../db/generated/client.ts';
import { requestFullReconcile } from './cursors.ts';
import { dynamicsDiscovery } from './dynamics.ts';
import { marketoDiscovery } from './marketo.ts';
import { countOutcomes } from './outcomes.ts';
import { fullReconciliation } from './reconcile.ts';
import { discoverRelated } from './related.ts';
import { Aborted, describe, ENTITIES, QuotaStop, startSweepRun, type SweepRun, type SweepSettings } from './run.ts';
import type { SweeperOptions, SweepRequest, SweepResult, SweepStatus } from './types.ts';
import { discoverUnfinishedCreates } from './unfinished.ts';

// One reconciliation sweep: find what changed on each side since the stored cursors, and put it
// in the inbox (origin SWEEP) for the engine, which re-reads both sides and merges. The sweep never
// writes to Marketo or Dynamics. A cursor moves only after the events it covers are in the inbox,
// so a crash re-discovers and never skips; dedupe keys make a re-discovery a no-op. The caller
// holds the sweep lease (schedule.ts), so one sweep runs at a time across replicas.

// The steps, in order (each in its own module): discover per source (dynamics.ts, related.ts,
// marketo.ts, unfinished.ts), page through what changed, hand each page to the inbox
// (run.ts enqueueAll), and account for every Marketo call to the quota guard (run.ts) before it is
// made; last, the full reconciliations asked for (reconcile.ts).

export type * from './types.ts';

/** Every discovery of one run, in order; a quota stop or the service stopping ends it early. */
async function discoverAll(s: SweepSettings, run: SweepRun, full: boolean): Promise<void> {
  const { prisma, options, overlapMs } = s;
  const { runId, counts, notes, checkAbort, enqueueAll } = run;
  const reconciliation = fullReconciliation(s, run);
  const dynamics = dynamicsDiscovery(s, run);
  const marketo = marketoDiscovery(s, run);
  if (full) for (const entity of ENTITIES) await requestFullReconcile(prisma, entity);
  await reconciliation.requestBackfills();
  // merges first: a change of a merged-away person's record, queued before its merge, would find
  // the person gone and bring it back (a new person) instead of following the moved link
  await marketo.merges();
  for (const entity of ENTITIES) await dynamics.discover(entity);
  for (const kind of ['account', 'owner'] as const) {
    const { changed } = await discoverRelated(
      { prisma, dataverse: options.dataverse, runId, overlapMs, enqueue: enqueueAll, called: () => void counts.dynamicsCalls++, note: (text) => notes.push(text), checkAbort },
      kind,
    );
    if (changed > 0) counts.relatedChanges = (counts.relatedChanges ?? 0) + changed;
  }
  await marketo.changes();
  await marketo.deletes();
  await discoverUnfinishedCreates(s, run);
  for (const entity of ENTITIES) await reconciliation.reconcile(entity);
}

export function createSweeper(options: SweeperOptions) {
  const { db, logger } = options;
  const prisma = db.prisma;
  const settings: SweepSettings = {
    prisma,
    options,
    pageSize: options.pageSize ?? 1000,
    overlapMs: options.overlapMs ?? 5 * 60_000,
    maxEmptyPages: options.maxEmptyPages ?? 200,
    marketoCursorMaxAgeMs: options.marketoCursorMaxAgeMs ?? 13 * 86_400_000,
    unfinishedCreateAgeMs: options.unfinishedCreateAgeMs ?? 2 * 60_000,
  };

  async function run(request: SweepRequest): Promise<SweepResult> {
    const started = await prisma.syncRun.create({ data: { trigger: request.trigger, owner: options.owner, scheduledFor: request.scheduledFor ?? null } });
    const runId = started.id;
    request.onStart?.(runId);
    // The caller holds the lease: a RUNNING row of someone else is a sweep whose replica died.
    await prisma.syncRun.updateMany({
      where: { status: 'RUNNING', id: { not: runId } },
      data: { status: 'FAILED', finishedAt: new Date(), error: 'abandoned: its replica stopped before the sweep finished' },
    });
    const sweep = startSweepRun(settings, runId, request.signal);
    const { counts, notes } = sweep;
    const log = logger.child({ runId, trigger: request.trigger });
    let status: SweepStatus = 'SUCCEEDED';
    let error: string | null = null;
    try {
      await discoverAll(settings, sweep, request.full === true);
    } catch (caught) {
      if (caught instanceof QuotaStop || caught instanceof Aborted) {
        status = 'STOPPED';
        error = caught.message;
        notes.push(`stopped early: ${caught.message}`);
      } else {
        status = 'FAILED';
        error = describe(caught);
        log.error({ err: caught }, 'sweep failed');
      }
    }

    const waitMs = request.outcomeWaitMs ?? options.outcomeWaitMs ?? 0;
    if (waitMs > 0 && counts.eventsEnqueued > 0) await countOutcomes(prisma, runId, started.startedAt, counts, waitMs, request.signal);
    await prisma.syncRun.update({
      where: { id: runId },
      data: { status, finishedAt: new Date(), counts: counts as unknown as Prisma.InputJsonValue, notes, error },
    });
    log.info({ status, ...counts, notes }, 'sweep finished');
    return { runId, status, counts, notes, error };
  }

  return { run };
}

export type Sweeper = ReturnType<typeof createSweeper>;
