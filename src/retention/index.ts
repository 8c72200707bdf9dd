import type { ScheduledTask } from 'node-cron';
import type { Database } from '../db/database.ts';
import type { PrismaClient } from '../db/generated/client.ts';
import type { Logger } from '../logger.ts';
import { createLease, scheduleLeased } from '../sweep/lease.ts';
import type { LeaseHolder } from '../sync/leases.ts';
import { pruneOnce, type PruneResult, type PrunedTable, type RetentionPolicy } from './prune.ts';

// Retention as the composition root wires it: a node-cron schedule whose ticks run on one replica
// only (the same SchedulerLease mechanism as the sweep, its own row "retention"), the lease renewed
// while a pass runs and the pass stopped between two batches if it is lost. Each pass is recorded
// in service_setting (syncStatus.lastPrune reads it, on every replica), logged once, and counted.

export const RETENTION_JOB = 'retention';
export const LAST_PRUNE_SETTING = 'retention.lastPrune';

export interface LastPrune {
  at: Date;
  removed: Record<PrunedTable, number>;
  durationMs: number;
  interrupted: boolean;
}

export async function readLastPrune(prisma: PrismaClient): Promise<LastPrune | null> {
  const row = await prisma.serviceSetting.findUnique({ where: { key: LAST_PRUNE_SETTING } });
  if (!row) return null;
  try {
    const parsed = JSON.parse(row.value) as Omit<LastPrune, 'at'> & { at: string };
    return { ...parsed, at: new Date(parsed.at) };
  } catch {
    return null;
  }
}

async function saveLastPrune(prisma: PrismaClient, result: PruneResult): Promise<void> {
  const value = JSON.stringify({ at: result.at.toISOString(), removed: result.removed, durationMs: Math.round(result.durationMs), interrupted: result.interrupted });
  await prisma.serviceSetting.upsert({ where: { key: LAST_PRUNE_SETTING }, create: { key: LAST_PRUNE_SETTING, value }, update: { value } });
}

export interface RetentionServiceOptions {
  db: Database;
  policy: RetentionPolicy;
  /** node-cron expression; undefined: never scheduled on this replica (pruneNow still works) */
  cron: string | undefined;
  owner: string;
  logger: Logger;
  /** the clock of the cutoffs (tests inject one) */
  now?: () => Date;
  /** metrics: called after every pass */
  onPruned?: (result: PruneResult) => void;
  /** lease length; the replica's heartbeat renews it while a pass runs */
  leaseMs?: number;
  /** the replica's lease heartbeat (sync/leases.ts) */
  leases: LeaseHolder;
}

export function createRetentionService(options: RetentionServiceOptions) {
  const { db, policy, logger } = options;
  const now = options.now ?? (() => new Date());
  const lease = createLease({ db: db.prisma, owner: options.owner, ttlMs: options.leaseMs ?? 60_000 });
  const shutdown = new AbortController();
  let task: ScheduledTask | undefined;
  let current: Promise<PruneResult> | undefined;

  /** One pass while holding the lease (already taken). */
  async function runHeld(): Promise<PruneResult> {
    const pass = options.leases.whileHeld(lease, RETENTION_JOB, shutdown.signal, (signal) => pruneOnce({ db: db.prisma, policy, now, signal }));
    current = pass;
    try {
      const result = await pass;
      await saveLastPrune(db.prisma, result);
      options.onPruned?.(result);
      logger.info(
        { removed: result.removed, batches: result.batches, durationMs: Math.round(result.durationMs), interrupted: result.interrupted },
        result.interrupted ? 'retention pass stopped early; the next one continues' : 'retention pass done',
      );
      return result;
    } finally {
      if (current === pass) current = undefined;
    }
  }

  return {
    start(): void {
      if (task || !options.cron || shutdown.signal.aborted) return;
      task = scheduleLeased(options.cron, RETENTION_JOB, lease, logger, async () => {
        if (shutdown.signal.aborted) return;
        try {
          await runHeld();
        } catch (error) {
          logger.error({ err: error }, 'retention pass failed; the next one retries');
        }
      });
    },
    /** A pass now, through the same lease; null when another replica is pruning. */
    async pruneNow(): Promise<PruneResult | null> {
      if (shutdown.signal.aborted || !(await lease.acquireNow(RETENTION_JOB))) return null;
      try {
        return await runHeld();
      } finally {
        await lease.release(RETENTION_JOB);
      }
    },
    async stop(): Promise<void> {
      shutdown.abort();
      await task?.destroy();
      task = undefined;
      await current?.catch(() => undefined);
    },
  };
}

export type RetentionService = ReturnType<typeof createRetentionService>;
