import cron, { type RunCoordinator, type ScheduledTask } from 'node-cron';
import type { Db } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import type { LeaseTable } from '../sync/leases.ts';

// The SchedulerLease row that elects one replica per sweep. One row per job (not per tick): it is
// both the mutual exclusion (held while a sweep runs, renewed by the replica's one lease heartbeat,
// sync/leases.ts, expiring if its replica dies) and the memory of the last tick that ran (`acquiredAt` = the tick's slot), so a
// replica whose timer fires a little late cannot run the same tick again after the first finished.
// All expiry comparisons use the database's clock, so replicas never disagree about them.

export interface LeaseOptions {
  db: Db;
  /** this replica's name */
  owner: string;
  /** lease length; the heartbeat renews it while the work runs */
  ttlMs: number;
}

export function createLease(options: LeaseOptions) {
  const { db, owner, ttlMs } = options;
  const ttlSeconds = ttlMs / 1000;

  const lease = {
    /** a LeaseTable: the replica's heartbeat (sync/leases.ts) renews the jobs held while they run */
    name: 'scheduler_lease',
    leaseMs: ttlMs,
    owner,
    ttlMs,
    /**
     * Takes the lease for a scheduled tick: only when nobody holds it and that tick (or a later
     * one) has not run yet. Atomic on both engines (one INSERT .. ON CONFLICT DO UPDATE .. WHERE).
     */
    async acquireTick(job: string, slot: Date): Promise<boolean> {
      const rows = await db.$queryRaw<{ owner: string }[]>`
        INSERT INTO scheduler_lease (key, owner, "acquiredAt", "expiresAt")
        VALUES (${job}, ${owner}, ${slot}, now() + make_interval(secs => ${ttlSeconds}::float8))
        ON CONFLICT (key) DO UPDATE
           SET owner = EXCLUDED.owner, "acquiredAt" = EXCLUDED."acquiredAt", "expiresAt" = EXCLUDED."expiresAt"
         WHERE scheduler_lease."expiresAt" <= now() AND scheduler_lease."acquiredAt" < EXCLUDED."acquiredAt"
        RETURNING owner`;
      return rows[0]?.owner === owner;
    },
    /** Takes the lease for an unscheduled run (operator, CLI): only when nobody holds it. */
    async acquireNow(job: string): Promise<boolean> {
      const rows = await db.$queryRaw<{ owner: string }[]>`
        INSERT INTO scheduler_lease (key, owner, "acquiredAt", "expiresAt")
        VALUES (${job}, ${owner}, now(), now() + make_interval(secs => ${ttlSeconds}::float8))
        ON CONFLICT (key) DO UPDATE
           SET owner = EXCLUDED.owner, "acquiredAt" = greatest(scheduler_lease."acquiredAt", EXCLUDED."acquiredAt"),
               "expiresAt" = EXCLUDED."expiresAt"
         WHERE scheduler_lease."expiresAt" <= now()
        RETURNING owner`;
      return rows[0]?.owner === owner;
    },
    /** Extends the held leases of `jobs`; answers those still this replica's (the others were taken). */
    async renew(jobs: readonly string[]): Promise<ReadonlySet<string>> {
      if (jobs.length === 0) return new Set();
      const rows = await db.$queryRaw<{ key: string }[]>`
        UPDATE scheduler_lease SET "expiresAt" = now() + make_interval(secs => ${ttlSeconds}::float8)
         WHERE key = ANY(${[...jobs]}::text[]) AND owner = ${owner}
        RETURNING key`;
      return new Set(rows.map((r) => r.key));
    },
    /** Lets go at once (the tick it ran stays recorded in `acquiredAt`). */
    async release(job: string): Promise<void> {
      await db.$executeRaw`UPDATE scheduler_lease SET "expiresAt" = now() WHERE key = ${job} AND owner = ${owner}`;
    },
  };
  return lease satisfies LeaseTable;
}

export type Lease = ReturnType<typeof createLease>;

/** node-cron keys a distributed tick as `<task name>:<slot ISO>`; task names here have no colon. */
export function parseCoordinatorKey(key: string): { job: string; slot: Date } | null {
  const at = key.indexOf(':');
  if (at < 0) return null;
  const slot = new Date(key.slice(at + 1));
  return Number.isNaN(slot.getTime()) ? null : { job: key.slice(0, at), slot };
}

/**
 * node-cron's RunCoordinator over the lease: `shouldRun` is asked once per tick on every replica
 * and says yes on exactly one; `onComplete` releases. `jobOf` maps a task name to its lease row
 * (several tasks may share one row, so they also never overlap each other).
 */
export function leaseCoordinator(lease: Lease, jobOf: (taskName: string) => string = (name) => name): RunCoordinator {
  return {
    async shouldRun(key) {
      const parsed = parseCoordinatorKey(key);
      if (!parsed) return false;
      return lease.acquireTick(jobOf(parsed.job), parsed.slot);
    },
    async onComplete(key) {
      const parsed = parseCoordinatorKey(key);
      if (parsed) await lease.release(jobOf(parsed.job));
    },
  };
}

/** A node-cron task whose ticks run on one replica only (the holder of `job`'s lease), never overlapping. */
export function scheduleLeased(expression: string, job: string, lease: Lease, logger: Logger, tick: (slot: Date) => Promise<void>): ScheduledTask {
  // node-cron passes the tick's slot (the time it matched), the same on every replica
  return cron.schedule(expression, (context) => tick(context.date), {
    name: job,
    noOverlap: true,
    distributed: true,
    runCoordinator: leaseCoordinator(lease),
    distributedLease: lease.ttlMs,
    logger: cronLogger(logger),
    suppressMissedWarning: true,
  });
}

/** node-cron's own messages at debug level, its errors as errors. */
export function cronLogger(logger: Logger) {
  return {
    info: (message: string) => logger.debug({ component: 'node-cron' }, message),
    warn: (message: string) => logger.debug({ component: 'node-cron' }, message),
    error: (message: string | Error, err?: Error) => logger.error({ component: 'node-cron', err: err ?? message }, 'scheduler error'),
    debug: (message: string | Error) => logger.debug({ component: 'node-cron' }, String(message)),
  };
}
