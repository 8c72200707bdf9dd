import type { DataverseEntity } from '../connectors/dynamics/dataverse.client.ts';
import type { Database } from '../db/database.ts';
import { enqueueMany, type NewChangeEvent } from '../inbox/inbox.ts';
import { withoutSuppressed } from '../security/suppression.ts';
import type { LinkedEntity } from '../sync/policy.ts';
import type { SweepCounts, SweeperOptions, SweepMarketoClient } from './types.ts';

// What every step of one sweep shares: the run's id, counts and notes, its stop conditions (the
// service stopping, the quota guard) and the hand-off to the inbox.

export const ENTITIES: readonly LinkedEntity[] = ['LEAD', 'CONTACT'];
export const dvEntity = (entity: LinkedEntity): DataverseEntity => (entity === 'LEAD' ? 'lead' : 'contact');
export const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** The sweep stops early (status STOPPED): the quota guard, or the service shutting down. */
export class QuotaStop extends Error {}
export class Aborted extends Error {}

/** The sweeper's options with their defaults applied: the same for every run. */
export interface SweepSettings {
  prisma: Database['prisma'];
  options: SweeperOptions;
  pageSize: number;
  overlapMs: number;
  maxEmptyPages: number;
  marketoCursorMaxAgeMs: number;
  unfinishedCreateAgeMs: number;
}

export interface SweepRun {
  runId: string;
  counts: SweepCounts;
  notes: string[];
  /** throws Aborted once the service is shutting down */
  checkAbort: () => void;
  /** hands events to the inbox in batches (erased persons' dropped) and wakes the worker */
  enqueueAll: (found: NewChangeEvent[]) => Promise<void>;
  /** throws QuotaStop before `calls` more would take the day's Marketo usage past the sweep's share */
  spendMarketo: (calls: number, what: string) => Promise<void>;
}

export function emptyCounts(): SweepCounts {
  return {
    dynamicsChanges: 0,
    dynamicsDeletes: 0,
    marketoChanges: 0,
    marketoDeletes: 0,
    echoesDropped: 0,
    overwrittenEdits: 0,
    alreadySynced: 0,
    unlinkedSkipped: 0,
    eventsEnqueued: 0,
    duplicates: 0,
    linksReconciled: 0,
    marketoCalls: 0,
    dynamicsCalls: 0,
  };
}

/**
 * The quota guard: the day's Marketo usage, asked of Marketo once a run (other integrations
 * count too) and followed by this replica's own calls since.
 */
function quotaGuard(marketo: SweepMarketoClient, quota: SweeperOptions['quota'], counts: SweepCounts, notes: string[]) {
  const limit = Math.floor(quota.dailyQuota * quota.share);
  let usageBase: { instance: number; client: number } | undefined;
  async function marketoUsed(): Promise<number> {
    const client = marketo.stats().dailyCalls;
    if (!usageBase) {
      let instance = client;
      try {
        counts.marketoCalls++;
        const usage = await marketo.getDailyUsage();
        instance = Math.max(client, ...usage.map((u) => u.total));
      } catch (error) {
        notes.push(`Marketo usage unavailable (${describe(error)}); the quota guard counts this replica's calls only`);
      }
      usageBase = { instance, client: marketo.stats().dailyCalls };
    }
    // other integrations' calls since the check are unknown: this replica's are counted
    return usageBase.instance + (marketo.stats().dailyCalls - usageBase.client);
  }
  /** stops the sweep before `calls` more would take the day's Marketo usage past the share */
  async function spendMarketo(calls: number, what: string): Promise<void> {
    const used = await marketoUsed();
    if (used + calls > limit) {
      throw new QuotaStop(
        `quota guard: Marketo usage today is ${used} of ${quota.dailyQuota} calls; ${what} would pass the sweep's share of ${Math.round(quota.share * 100)}% (${limit}); webhooks keep the rest`,
      );
    }
  }
  return spendMarketo;
}

export function startSweepRun(s: SweepSettings, runId: string, signal: AbortSignal | undefined): SweepRun {
  const { prisma, options, pageSize } = s;
  const counts = emptyCounts();
  const notes: string[] = [];
  const checkAbort = () => {
    if (signal?.aborted) throw new Aborted('the service is shutting down');
  };
  async function enqueueAll(found: NewChangeEvent[]): Promise<void> {
    // an erased person's change leaves no row (the engine checks their emails too, once read)
    const events = options.suppressions ? await withoutSuppressed(options.suppressions, found) : found;
    for (let i = 0; i < events.length; i += pageSize) {
      const { queued, duplicates } = await enqueueMany(prisma, events.slice(i, i + pageSize));
      counts.eventsEnqueued += queued;
      counts.duplicates += duplicates;
    }
    if (events.length > 0) options.notify();
  }
  return { runId, counts, notes, checkAbort, enqueueAll, spendMarketo: quotaGuard(options.marketo, options.quota, counts, notes) };
}
