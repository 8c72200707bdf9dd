import type { NewChangeEvent } from '../inbox/inbox.ts';
import { staleIntents } from '../sync/create-intents.ts';
import type { SweepRun, SweepSettings } from './run.ts';

/**
 * A create journaled and never linked whose worker is gone (create-intents.ts): the record it
 * was for may never change again, so the sweep hands it to the inbox, whose holder finishes it.
 */
export async function discoverUnfinishedCreates(s: SweepSettings, run: SweepRun): Promise<void> {
  const { prisma, unfinishedCreateAgeMs, pageSize } = s;
  const { runId, counts, enqueueAll } = run;
  const intents = await staleIntents(prisma, new Date(Date.now() - unfinishedCreateAgeMs), pageSize);
  const events = intents.map((intent): NewChangeEvent => {
    const common = { origin: 'SWEEP' as const, dynamicsEntity: intent.entity, dedupeKey: `sweep:create:${intent.id}:${runId}` };
    return intent.direction === 'TO_DYNAMICS'
      ? { ...common, source: 'MARKETO', operation: 'SYNC_PERSON', marketoId: intent.marketoId ?? undefined, payload: { runId, syncAs: intent.entity === 'CONTACT' ? 'contact' : 'lead', ...(intent.assignTo ? { assignTo: intent.assignTo } : {}) } }
      : { ...common, source: 'DYNAMICS', operation: 'UPDATE', dynamicsId: intent.dynamicsId, payload: { runId } };
  });
  if (events.length > 0) counts.unfinishedCreates = events.length;
  await enqueueAll(events);
}
